//! Sharing KV records: granting, revoking and removing shares, a recipient opening one, and the
//! owner rotating a record's data key after a share ended.
//!
//! What a recipient may read is decided from the event store (the Share and the Secret aggregates),
//! never from a read model that may lag: a revoked share is refused from the moment the revocation
//! commits, a deleted record ends its shares at once, an expired share answers 404.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use harden_domain::secret::{KeyName, KeyUse, Secret, SecretEnvelope, SecretEvent, VersionCheck};
use harden_domain::share::{Grant, ShareCommand, SharedRecord, Wrap};
use harden_domain::values::KeyBlob;
use harden_domain::UserId;

use crate::access;
use crate::bus::{Committed, Meta};
use crate::credentials::Principal;
use crate::error::Error;
use crate::service::Harden;

pub const SHARE_NOT_FOUND: &str = "share not found";
pub const MAX_ALIAS_BLOB: usize = 4 * 1024;

/// What an owner asks for when sharing a record (the wrap and alias made by the Proxy).
pub struct NewShare<'a> {
    pub recipient: UserId,
    pub permission: &'a str,
    pub key_epoch: u64,
    pub wrap_ecc_b64: &'a str,
    pub wrap_kyber_b64: &'a str,
    pub encrypted_alias_b64: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A share opened by its recipient: the record's current version under the recipient's wrap.
pub struct SharedValue {
    pub share_id: Uuid,
    pub owner: UserId,
    pub key_name: KeyName,
    pub version: u64,
    pub key_epoch: u64,
    pub envelope: SecretEnvelope,
    pub wrap: Wrap,
    pub encrypted_alias: KeyBlob,
    pub expires_at: Option<DateTime<Utc>>,
}

pub(crate) fn parse_wrap(ecc: &str, kyber: &str) -> Result<Wrap, Error> {
    use harden_domain::secret::MAX_WRAP_LEN;
    Ok(Wrap {
        ecc: KeyBlob::parse("encryptedAesKeyEccB64", ecc, 1..=MAX_WRAP_LEN)?,
        kyber: KeyBlob::parse("encryptedAesKeyKyberB64", kyber, 1..=MAX_WRAP_LEN)?,
    })
}

pub(crate) fn share_id(id: Uuid) -> String {
    id.to_string()
}

impl Harden {
    /// What every grant checks, of a record or a file: the permission, the recipient (another
    /// active user of the caller's org, with keys) and the shapes of the wrap and the alias.
    pub(crate) async fn check_grant(
        &self,
        caller: &Principal,
        new: &NewShare<'_>,
    ) -> Result<(harden_domain::OrgId, Wrap, KeyBlob), Error> {
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has nothing to share"))?;
        // The request on its own, before any state: a bad one is 400 whatever exists.
        harden_domain::share::check_terms(new.permission, new.expires_at, Utc::now())?;
        if new.recipient == caller.user_id {
            return Err(Error::invalid("you cannot share with yourself"));
        }
        let wrap = parse_wrap(new.wrap_ecc_b64, new.wrap_kyber_b64)?;
        let encrypted_alias = KeyBlob::parse("encryptedAliasB64", new.encrypted_alias_b64, 1..=MAX_ALIAS_BLOB)?;
        let recipient = self.users.load(&new.recipient.to_string()).await?;
        if recipient.org_id() != Some(org) || !recipient.is_active() {
            return Err(Error::not_found("recipient not found in your org"));
        }
        if !recipient.has_keys() {
            return Err(Error::invalid(
                "the recipient has no keys yet: they must call POST /v1/keys/generate before anything can be shared with them",
            ));
        }
        Ok((org, wrap, encrypted_alias))
    }

    /// The last event of a Secret, which carries its current version's envelope.
    async fn secret_now(&self, id: &str) -> Result<(Secret, Option<SecretEvent>), Error> {
        let mut secret = Secret::default();
        let last = self.secrets.last_event(id).await?.map(|(_, event)| event);
        if let Some(event) = &last {
            cqrs_es::Aggregate::apply(&mut secret, event.clone());
        }
        Ok((secret, last))
    }

    /// Shares the caller's live record `key_name` with a user of their org.
    pub async fn grant_share(
        &self,
        caller: &Principal,
        key_name: &KeyName,
        new: NewShare<'_>,
        meta: Meta,
    ) -> Result<(Uuid, Committed), Error> {
        let (org, wrap, encrypted_alias) = self.check_grant(caller, &new).await?;
        let secret = self.secrets.load(&self.ids().secret_id(caller.user_id, key_name)).await?;
        let key = secret.key_epoch().ok_or_else(|| Error::not_found("key not found"))?;
        if key.epoch != new.key_epoch {
            return Err(Error::Conflict(harden_domain::secret::SecretError::KeyChanged.to_string()));
        }
        // One open share per recipient and record: a second would survive the revocation of the first.
        let duplicate: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM kv_shares WHERE owner_id = $1 AND key_name = $2 AND recipient_id = $3
                 AND life = $4 AND state = 'active' AND (expires_at IS NULL OR expires_at > now()))",
        )
        .bind(caller.user_id.as_uuid())
        .bind(key_name.as_str())
        .bind(new.recipient.as_uuid())
        .bind(key.life as i64)
        .fetch_one(self.pool())
        .await?;
        if duplicate {
            return Err(Error::Conflict("this record is already shared with this user".into()));
        }
        let id = Uuid::new_v4();
        let grant = Grant {
            org_id: org,
            owner: caller.user_id,
            recipient: new.recipient,
            record: SharedRecord::Kv { key_name: key_name.clone() },
            life: key.life,
            epoch: key.epoch,
            rotation: key.rotation,
            wrap,
            encrypted_alias,
            expires_at: new.expires_at,
        };
        let meta = meta.with_org(org);
        let command = ShareCommand::Grant { share_id: share_id(id), grant, now: Utc::now() };
        let committed = self.shares.execute(&share_id(id), command, &meta).await?;
        // A rotation that committed between the epoch check and the grant did not re-wrap this
        // share: withdraw it rather than leave a share that cannot open.
        let now = self.secrets.load(&self.ids().secret_id(caller.user_id, key_name)).await?.key_epoch();
        if now != Some(key) {
            self.shares.execute(&share_id(id), ShareCommand::Revoke { by: caller.user_id }, &meta).await?;
            return Err(Error::Conflict(harden_domain::secret::SecretError::KeyChanged.to_string()));
        }
        Ok((id, committed))
    }

    /// The owner ends a share of their record `key_name`; the recipient is refused from now on.
    pub async fn revoke_share(
        &self,
        caller: &Principal,
        key_name: &KeyName,
        id: Uuid,
        meta: Meta,
    ) -> Result<Committed, Error> {
        let share = self.shares.load(&share_id(id)).await?;
        let grant = share.active().ok_or_else(|| Error::not_found(SHARE_NOT_FOUND))?;
        if grant.owner != caller.user_id || grant.record.key_name() != Some(key_name) {
            return Err(Error::not_found(SHARE_NOT_FOUND));
        }
        let org = grant.org_id;
        self.shares.execute(&share_id(id), ShareCommand::Revoke { by: caller.user_id }, &meta.with_org(org)).await
    }

    /// The recipient gives up a share of a record (`of_file` false) or of a file.
    pub async fn remove_share(
        &self,
        caller: &Principal,
        id: Uuid,
        of_file: bool,
        meta: Meta,
    ) -> Result<Committed, Error> {
        let share = self.shares.load(&share_id(id)).await?;
        let grant = share.active().ok_or_else(|| Error::not_found(SHARE_NOT_FOUND))?;
        if grant.recipient != caller.user_id || grant.record.file_id().is_some() != of_file {
            return Err(Error::not_found(SHARE_NOT_FOUND));
        }
        let org = grant.org_id;
        self.shares.execute(&share_id(id), ShareCommand::Remove { by: caller.user_id }, &meta.with_org(org)).await
    }

    /// The recipient opens a share: the record's current version and their wrap of its key.
    pub async fn read_share(&self, caller: &Principal, id: Uuid) -> Result<SharedValue, Error> {
        let share = self.shares.load(&share_id(id)).await?;
        let grant = share
            .open_at(Utc::now())
            .filter(|g| g.recipient == caller.user_id)
            .ok_or_else(|| Error::not_found(SHARE_NOT_FOUND))?;
        let key_name = grant.record.key_name().ok_or_else(|| Error::not_found(SHARE_NOT_FOUND))?;
        let (secret, last) = self.secret_now(&self.ids().secret_id(grant.owner, key_name)).await?;
        let key =
            secret.key_epoch().filter(|k| k.life == grant.life).ok_or_else(|| Error::not_found(SHARE_NOT_FOUND))?;
        let Some(
            SecretEvent::SecretCreated { version, envelope, .. } | SecretEvent::SecretUpdated { version, envelope, .. },
        ) = last
        else {
            return Err(Error::not_found(SHARE_NOT_FOUND));
        };
        let wrap = share.wrap_for(key.epoch, key.rotation).cloned().ok_or_else(|| {
            Error::Conflict(
                "the owner changed this record's key and this share was not re-wrapped; ask them to share it again"
                    .into(),
            )
        })?;
        Ok(SharedValue {
            share_id: id,
            owner: grant.owner,
            key_name: key_name.clone(),
            version,
            key_epoch: key.epoch,
            envelope,
            wrap,
            encrypted_alias: grant.encrypted_alias.clone(),
            expires_at: grant.expires_at,
        })
    }

    /// Rotates the data key of the caller's record: each remaining share gets its wrap of the new
    /// key first (harmless until the record uses it), then the record is written under the new key
    /// as a new version (a check-and-set on `expected_version`).
    pub async fn rotate_secret(
        &self,
        caller: &Principal,
        key_name: &KeyName,
        expected_version: u64,
        envelope: SecretEnvelope,
        rewraps: Vec<(Uuid, &str, &str)>,
        meta: Meta,
    ) -> Result<crate::service::WrittenSecret, Error> {
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no KV records"))?;
        let rewraps = rewraps
            .into_iter()
            .map(|(share, ecc, kyber)| Ok((share, parse_wrap(ecc, kyber)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let id = self.ids().secret_id(caller.user_id, key_name);
        let secret = self.secrets.load(&id).await?;
        // Only a live record of the caller's has a key to rotate: any other name is not theirs (404,
        // not a version conflict with a record that does not exist).
        if secret.current_version() == 0 {
            return Err(Error::not_found("key not found"));
        }
        if secret.current_version() != expected_version {
            return Err(Error::VersionConflict { current: secret.current_version() });
        }
        let new_epoch = expected_version + 1;
        let rotation = Uuid::new_v4();
        // Every open share must get the new key, or its recipient would lose access.
        let open: Vec<Uuid> = sqlx::query_scalar(
            "SELECT share_id FROM kv_shares WHERE owner_id = $1 AND key_name = $2 AND state = 'active'
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(caller.user_id.as_uuid())
        .bind(key_name.as_str())
        .fetch_all(self.pool())
        .await?;
        if let Some(missing) = open.iter().find(|id| !rewraps.iter().any(|(s, _)| s == *id)) {
            return Err(Error::Conflict(format!(
                "share {missing} was granted meanwhile and has no wrap of the new key; retry"
            )));
        }
        for (share, wrap) in rewraps {
            let state = self.shares.load(&share_id(share)).await?;
            match state.active() {
                Some(g) if g.owner == caller.user_id && g.record.key_name() == Some(key_name) => {}
                // Ended meanwhile: it needs no key.
                _ => continue,
            }
            let command = ShareCommand::Rewrap { epoch: new_epoch, rotation, wrap };
            self.shares.execute(&share_id(share), command, &meta.clone().with_org(org)).await?;
        }
        let check = VersionCheck { current: Some(expected_version), becomes: None };
        self.write_secret(caller, key_name, envelope, check, KeyUse::Rotate(rotation), meta).await
    }
}
