//! The audit view: one entry per audited event, numbered per org and hash-chained.
//!
//! [`entry_for`] decides, as a pure function of an event, whether it is audited and what its entry
//! says; [`seal`] chains it. The projector and `harden audit verify` both use them, so verifying is
//! recomputing the chain from the event store and comparing it with what the view holds.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use harden_domain::file::FileEvent;
use harden_domain::org::OrgEvent;
use harden_domain::recovery::RecoveryEvent;
use harden_domain::secret::SecretEvent;
use harden_domain::share::ShareEvent;
use harden_domain::user::UserEvent;

use crate::follower::{Projector, StoredEvent, EVENT_COLUMNS};

pub const NAME: &str = "audit";

/// KV history, shown by default.
pub const SCOPE_KV: &str = "kv";
/// Everything else audited (orgs, plans, users, keys), shown with `?scope=all`.
pub const SCOPE_ADMIN: &str = "admin";

/// What an audited event says, before it is numbered and chained.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub org_id: Uuid,
    pub scope: &'static str,
    pub action: &'static str,
    pub key_name: Option<String>,
    pub version: Option<i64>,
    pub user_id: Option<Uuid>,
    pub subject_id: Option<String>,
    pub details: Option<Value>,
}

pub use harden_domain::audit_chain::{hash_of, Entry, GENESIS};

/// The audited content of an event, or None. Its org is the one the command recorded in the
/// event's metadata (every org-scoped command does); events of no org are not in any org's audit.
pub fn entry_for(event: &StoredEvent) -> anyhow::Result<Option<Draft>> {
    let Some(org_id) = event.org() else { return Ok(None) };
    let actor = event.actor();
    let draft = |scope, action| Draft {
        org_id,
        scope,
        action,
        key_name: None,
        version: None,
        user_id: actor,
        subject_id: None,
        details: None,
    };
    let decode = |what| format!("Failed to decode a {what} event for the audit");
    // Cloud API changes: the actor is an identity-provider user, named in the details.
    let cloud = |action, subject_id, mut details: Value| {
        details["actorIdentity"] = event.metadata.get("actor_identity").cloned().unwrap_or(Value::Null);
        Draft { subject_id, details: Some(details), ..draft(SCOPE_ADMIN, action) }
    };
    Ok(Some(match event.aggregate_type.as_str() {
        "Secret" => {
            let (action, key_name, version) =
                match serde_json::from_value(event.payload.clone()).with_context(|| decode("Secret"))? {
                    SecretEvent::SecretCreated { key_name, version, .. } => ("create", key_name, version),
                    SecretEvent::SecretUpdated { key_name, version, .. } => ("update", key_name, version),
                    SecretEvent::SecretDeleted { key_name, version, .. } => ("delete", key_name, version),
                    // The Share events audit the grant and its end.
                    SecretEvent::SecretShareOpened { .. } | SecretEvent::SecretShareClosed { .. } => return Ok(None),
                };
            Draft {
                key_name: Some(key_name.as_str().to_owned()),
                version: Some(version as i64),
                ..draft(SCOPE_KV, action)
            }
        }
        "Org" => match serde_json::from_value(event.payload.clone()).with_context(|| decode("Org"))? {
            OrgEvent::OrgCreated { plan, .. } => {
                Draft { details: Some(json!({ "plan": plan.key() })), ..draft(SCOPE_ADMIN, "org.create") }
            }
            OrgEvent::OrgPlanChanged { from, to, .. } => Draft {
                details: Some(json!({ "from": from.key(), "to": to.key() })),
                ..draft(SCOPE_ADMIN, "org.plan_change")
            },
            OrgEvent::OrgStorageConfigured { settings, .. } => Draft {
                // Where files go, never the secret key (which is sealed anyway).
                details: Some(json!({
                    "serviceUrl": settings.service_url,
                    "bucket": settings.bucket,
                    "region": settings.region,
                    "forcePathStyle": settings.force_path_style,
                })),
                ..draft(SCOPE_ADMIN, "org.storage_configure")
            },
            OrgEvent::OrgSubscriptionEnded { subscription_id, reason, .. } => Draft {
                details: Some(json!({ "subscriptionId": subscription_id, "reason": reason })),
                ..draft(SCOPE_ADMIN, "org.subscription_end")
            },
            OrgEvent::OrgOnboarded { profile, .. } => {
                cloud("org.onboard", None, json!({ "slug": profile.slug, "createdBy": profile.created_by }))
            }
            OrgEvent::OrgProfileUpdated { .. } => cloud("org.profile_update", None, json!({})),
            OrgEvent::OrgDeleted { .. } => cloud("org.delete", None, json!({})),
            OrgEvent::InviteCreated { invite_id, role, expires_at, .. } => cloud(
                "invite.create",
                Some(invite_id.to_string()),
                json!({ "role": role.as_str(), "expiresAt": expires_at }),
            ),
            OrgEvent::InviteRevoked { invite_id, .. } => cloud("invite.revoke", Some(invite_id.to_string()), json!({})),
            OrgEvent::MemberJoined { identity, user_id, role, invite_id, .. } => cloud(
                "member.join",
                Some(user_id.to_string()),
                json!({ "identity": identity, "role": role.as_str(), "inviteId": invite_id }),
            ),
            OrgEvent::MemberRoleChanged { identity, user_id, from, to, .. } => cloud(
                "member.role_change",
                Some(user_id.to_string()),
                json!({ "identity": identity, "from": from.as_str(), "to": to.as_str() }),
            ),
            OrgEvent::MemberRemoved { identity, user_id, identity_deleted, .. } => cloud(
                "member.remove",
                Some(user_id.to_string()),
                json!({ "identity": identity, "identityDeleted": identity_deleted }),
            ),
        },
        "User" => {
            let (action, subject, details) =
                match serde_json::from_value(event.payload.clone()).with_context(|| decode("User"))? {
                    UserEvent::GlobalAdminBootstrapped { .. } => return Ok(None),
                    UserEvent::UserCreated { user_id, role, .. } => {
                        ("user.create", user_id, Some(json!({ "role": role.as_str() })))
                    }
                    UserEvent::UserDeactivated { user_id } => ("user.deactivate", user_id, None),
                    UserEvent::ApiKeyIssued { user_id, key_id, .. } => {
                        ("apikey.issue", user_id, Some(json!({ "keyId": key_id })))
                    }
                    UserEvent::ApiKeyRevoked { user_id, key_id } => {
                        ("apikey.revoke", user_id, Some(json!({ "keyId": key_id })))
                    }
                    UserEvent::UserKeysStored { user_id, .. } => ("user.keys_store", user_id, None),
                    UserEvent::UserKeysResealed { user_id, .. } => ("user.keys_reseal", user_id, None),
                    UserEvent::UserKeyBundlePublished { user_id, .. } => ("user.bundle_publish", user_id, None),
                    UserEvent::UserPinsStored { user_id, .. } => ("user.pins_store", user_id, None),
                };
            Draft { subject_id: Some(subject.to_string()), details, ..draft(SCOPE_ADMIN, action) }
        }
        "Share" => {
            let (action, share_id, key_name, subject, details) =
                match serde_json::from_value(event.payload.clone()).with_context(|| decode("Share"))? {
                    ShareEvent::ShareGranted { share_id, grant } => (
                        "share.grant",
                        share_id,
                        grant.record.key_name().map(|k| k.as_str().to_owned()),
                        Some(grant.recipient.to_string()),
                        match grant.record.file_id() {
                            Some(file_id) => {
                                json!({ "permission": "read", "expiresUtc": grant.expires_at, "fileId": file_id })
                            }
                            None => json!({ "permission": "read", "expiresUtc": grant.expires_at }),
                        },
                    ),
                    ShareEvent::ShareRewrapped { share_id, epoch, .. } => {
                        ("share.rewrap", share_id, None, None, json!({ "keyEpoch": epoch }))
                    }
                    ShareEvent::ShareRevoked { share_id } => ("share.revoke", share_id, None, None, json!({})),
                    ShareEvent::ShareRemoved { share_id } => ("share.remove", share_id, None, None, json!({})),
                };
            let mut details = details;
            details["shareId"] = json!(share_id);
            Draft { key_name, subject_id: subject, details: Some(details), ..draft(SCOPE_ADMIN, action) }
        }
        "File" => {
            let (action, file_id, details) =
                match serde_json::from_value(event.payload.clone()).with_context(|| decode("File"))? {
                    FileEvent::FileStored { file_id, file_bytes, meta, .. } => (
                        "file.upload",
                        file_id,
                        json!({ "fileBytes": file_bytes, "contentType": meta.content_type.as_str() }),
                    ),
                    FileEvent::FileDeleted { file_id, .. } => ("file.delete", file_id, json!({})),
                    FileEvent::FileObjectRemoved { file_id, .. } => ("file.object_remove", file_id, json!({})),
                    FileEvent::FileShareOpened { .. } | FileEvent::FileShareClosed { .. } => return Ok(None),
                };
            Draft { subject_id: Some(file_id.to_string()), details: Some(details), ..draft(SCOPE_ADMIN, action) }
        }
        "Recovery" => {
            let (action, owner, trustee) = match serde_json::from_value(event.payload.clone())
                .with_context(|| decode("Recovery"))?
            {
                RecoveryEvent::RecoveryTrusteeSet { owner, trustee, .. } => ("recovery.trustee_set", owner, trustee),
                RecoveryEvent::RecoveryTrusteeRemoved { owner, trustee } => ("recovery.trustee_remove", owner, trustee),
                RecoveryEvent::RecoveryRestoreSubmitted { owner, trustee, .. } => {
                    ("recovery.restore_submit", owner, trustee)
                }
                RecoveryEvent::RecoveryCompleted { owner, trustee } => ("recovery.complete", owner, trustee),
            };
            Draft {
                subject_id: Some(owner.to_string()),
                details: Some(json!({ "trusteeUserId": trustee })),
                ..draft(SCOPE_ADMIN, action)
            }
        }
        _ => return Ok(None),
    }))
}

/// Numbers and chains a draft: the hash covers every field and the previous entry's hash.
pub fn seal(draft: Draft, seq: i64, prev_hash: &str, event_id: i64, recorded_at: DateTime<Utc>) -> Entry {
    let mut entry = Entry {
        org_id: draft.org_id,
        seq,
        event_id,
        scope: draft.scope.to_owned(),
        action: draft.action.to_owned(),
        key: draft.key_name,
        version: draft.version,
        user_id: draft.user_id,
        subject_id: draft.subject_id,
        details: draft.details,
        timestamp_utc: recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    entry.hash = hash_of(&entry);
    entry
}

pub struct AuditProjector;

#[async_trait]
impl Projector for AuditProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        let Some(draft) = entry_for(event)? else { return Ok(()) };
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_entries WHERE org_id = $1 ORDER BY seq DESC LIMIT 1")
                .bind(draft.org_id)
                .fetch_optional(&mut *conn)
                .await?;
        let (seq, prev) = head.map(|(seq, hash)| (seq + 1, hash)).unwrap_or((1, GENESIS.to_owned()));
        let entry = seal(draft, seq, &prev, event.position.global_id, event.recorded_at);
        sqlx::query(
            "INSERT INTO audit_entries (org_id, seq, event_id, scope, action, key_name, version, user_id, subject_id, details, recorded_at, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(entry.org_id)
        .bind(entry.seq)
        .bind(entry.event_id)
        .bind(&entry.scope)
        .bind(&entry.action)
        .bind(&entry.key)
        .bind(entry.version)
        .bind(entry.user_id)
        .bind(&entry.subject_id)
        .bind(&entry.details)
        .bind(event.recorded_at)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Filters of `GET /audit` and `harden audit export`.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub key: Option<String>,
    pub user_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Include the admin scope, not just KV.
    pub all_scopes: bool,
    /// Entries after this sequence number (the pagination cursor).
    pub after_seq: Option<i64>,
}

fn entry_from_row(row: &sqlx::postgres::PgRow) -> Result<Entry, sqlx::Error> {
    let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
    Ok(Entry {
        org_id: row.try_get("org_id")?,
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        scope: row.try_get("scope")?,
        action: row.try_get("action")?,
        key: row.try_get("key_name")?,
        version: row.try_get("version")?,
        user_id: row.try_get("user_id")?,
        subject_id: row.try_get("subject_id")?,
        details: row.try_get("details")?,
        timestamp_utc: recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[derive(Clone)]
pub struct Audit {
    pool: PgPool,
}

impl Audit {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The org's entries matching `filter`, oldest first, at most `limit`.
    pub async fn list(&self, org: Uuid, filter: &Filter, limit: i64) -> Result<Vec<Entry>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM audit_entries
             WHERE org_id = $1
               AND ($2 OR scope = 'kv')
               AND ($3::text IS NULL OR key_name = $3)
               AND ($4::uuid IS NULL OR user_id = $4)
               AND ($5::timestamptz IS NULL OR recorded_at >= $5)
               AND ($6::timestamptz IS NULL OR recorded_at < $6)
               AND seq > $7
             ORDER BY seq LIMIT $8",
        )
        .bind(org)
        .bind(filter.all_scopes)
        .bind(&filter.key)
        .bind(filter.user_id)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.after_seq.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}

/// The outcome of `harden audit verify`.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The view matches the chain recomputed from the event store (`pending` events are committed
    /// but not yet projected); `head_seq` is where the given head hash was found.
    Intact { entries: i64, pending: i64, head_seq: Option<i64> },
    /// The first entry that differs, and how.
    Broken { seq: i64, event_id: Option<i64>, reason: String },
}

/// Recomputes the org's chain from the event store and compares it with the audit view. With
/// `head`, the recomputed chain must also pass through that hash (one saved from an earlier export).
pub async fn verify(pool: &PgPool, org: Uuid, head: Option<&str>) -> anyhow::Result<Verdict> {
    let stored: Vec<Entry> = sqlx::query("SELECT * FROM audit_entries WHERE org_id = $1 ORDER BY seq")
        .bind(org)
        .fetch_all(pool)
        .await?
        .iter()
        .map(entry_from_row)
        .collect::<Result<_, _>>()?;
    let events = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE metadata ->> 'org_id' = $1 AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY tx_id, global_id"
    ))
    .bind(org.to_string())
    .fetch_all(pool)
    .await?;
    let mut prev = GENESIS.to_owned();
    let mut seq = 0i64;
    let mut head_seq = None;
    for row in &events {
        let event = crate::follower::decode(row)?;
        let Some(draft) = entry_for(&event)? else { continue };
        seq += 1;
        let expected = seal(draft, seq, &prev, event.position.global_id, event.recorded_at);
        if head == Some(expected.hash.as_str()) {
            head_seq = Some(seq);
        }
        match stored.get(seq as usize - 1) {
            Some(actual) if *actual == expected => {}
            Some(actual) => {
                let reason = describe_difference(actual, &expected);
                return Ok(Verdict::Broken { seq, event_id: Some(expected.event_id), reason });
            }
            None => {}
        }
        prev = expected.hash;
    }
    if (stored.len() as i64) > seq {
        let extra = &stored[seq as usize];
        return Ok(Verdict::Broken {
            seq: extra.seq,
            event_id: Some(extra.event_id),
            reason: "the view holds an entry that no event accounts for".into(),
        });
    }
    if let (Some(head), None) = (head, head_seq) {
        return Ok(Verdict::Broken {
            seq,
            event_id: None,
            reason: format!("the chain does not pass through head {head}"),
        });
    }
    Ok(Verdict::Intact { entries: stored.len() as i64, pending: seq - stored.len() as i64, head_seq })
}

fn describe_difference(actual: &Entry, expected: &Entry) -> String {
    let a = serde_json::to_value(actual).unwrap_or_default();
    let e = serde_json::to_value(expected).unwrap_or_default();
    let fields: Vec<_> = e
        .as_object()
        .map(|obj| obj.keys().filter(|k| a.get(k.as_str()) != e.get(k.as_str())).cloned().collect())
        .unwrap_or_default();
    format!("stored entry differs from the event store in: {}", fields.join(", "))
}

/// Every entry of the org (optionally since a time), oldest first, for `harden audit export`.
pub async fn export(pool: &PgPool, org: Uuid, since: Option<DateTime<Utc>>) -> anyhow::Result<Vec<Entry>> {
    let rows = sqlx::query(
        "SELECT * FROM audit_entries WHERE org_id = $1 AND ($2::timestamptz IS NULL OR recorded_at >= $2) ORDER BY seq",
    )
    .bind(org)
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
}
