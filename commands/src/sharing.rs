//! Sharing KV records: granting, revoking and removing shares, a recipient opening one, and the
//! owner rotating a record's data key after a share ended.
//!
//! What a recipient may read is decided from the event store (the Share and the Secret aggregates),
//! never from a read model that may lag: a revoked share is refused from the moment the revocation
//! commits, a deleted record ends its shares at once, an expired share answers 404.
//!
//! Which shares exist is decided there too. A share's id is derived from its owner, record,
//! recipient and the record's life, so a second grant while one is open is refused by the Share
//! aggregate, and two racing grants conflict at append. A grant then opens the share on the record
//! (the Secret or File aggregate, at the key epoch its wrap is of), and a rotation must re-wrap or
//! end every share open there: a grant and a rotation that race are ordered by the record's own
//! stream, so neither a share without the key nor a grant of the old key survives.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use std::collections::BTreeSet;

use harden_domain::file::FileCommand;
use harden_domain::secret::{
    KeyName, KeyUse, Rotation, Secret, SecretCommand, SecretEnvelope, SecretEvent, VersionCheck,
};
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

    /// The Secret as its last event makes it, and its current version's envelope (from its last
    /// write: share events carry the state but not the ciphertext).
    async fn secret_now(&self, id: &str) -> Result<(Secret, Option<SecretEvent>), Error> {
        let mut secret = Secret::default();
        let Some((_, last)) = self.secrets.last_event(id).await? else { return Ok((secret, None)) };
        cqrs_es::Aggregate::apply(&mut secret, last.clone());
        let write = match last {
            SecretEvent::SecretCreated { .. } | SecretEvent::SecretUpdated { .. } => Some(last),
            SecretEvent::SecretShareOpened { .. } | SecretEvent::SecretShareClosed { .. } => {
                self.secrets.last_event_of(id, &["SecretCreated", "SecretUpdated"]).await?.map(|(_, e)| e)
            }
            SecretEvent::SecretDeleted { .. } => None,
        };
        Ok((secret, write))
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
        let secret_id = self.ids().secret_id(caller.user_id, key_name);
        let secret = self.secrets.load(&secret_id).await?;
        let key = secret.key_epoch().ok_or_else(|| Error::not_found("key not found"))?;
        if key.epoch != new.key_epoch {
            return Err(Error::Conflict(harden_domain::secret::SecretError::KeyChanged.to_string()));
        }
        let record = SharedRecord::Kv { key_name: key_name.clone() };
        let id = self.ids().share_id(caller.user_id, &record, new.recipient, key.life);
        let grant = Grant {
            org_id: org,
            owner: caller.user_id,
            recipient: new.recipient,
            record,
            life: key.life,
            epoch: key.epoch,
            rotation: key.rotation,
            wrap,
            encrypted_alias,
            expires_at: new.expires_at,
        };
        let meta = meta.with_org(org);
        let command = ShareCommand::Grant { share_id: share_id(id), grant, now: Utc::now() };
        self.shares.execute(&share_id(id), command, &meta).await.map_err(|e| match e {
            Error::Conflict(_) => Error::Conflict("this record is already shared with this user".into()),
            other => other,
        })?;
        // Open it on the record at the key its wrap is of. A rotation or a deletion that committed
        // since the key was read did not re-wrap this share: withdraw it rather than leave a share
        // that cannot open.
        let open = SecretCommand::OpenShare { share_id: id, key };
        match self.secrets.execute(&secret_id, open, &meta).await {
            Ok(committed) => Ok((id, committed)),
            Err(refused @ (Error::Conflict(_) | Error::NotFound(_))) => {
                self.shares.execute(&share_id(id), ShareCommand::Revoke { by: caller.user_id }, &meta).await?;
                Err(match refused {
                    Error::NotFound(_) => Error::not_found("key not found"),
                    other => other,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Closes a share that ended on the record or file it was of (nothing if it was not open there,
    /// as shares granted before records kept them are not).
    async fn close_on_record(&self, grant: &Grant, id: Uuid, meta: &Meta) -> Result<Committed, Error> {
        match &grant.record {
            SharedRecord::Kv { key_name } => {
                let secret_id = self.ids().secret_id(grant.owner, key_name);
                self.secrets.execute(&secret_id, SecretCommand::CloseShare { share_id: id }, meta).await
            }
            SharedRecord::File { file_id } => {
                self.files.execute(&file_id.to_string(), FileCommand::CloseShare { share_id: id }, meta).await
            }
        }
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
        let (grant, meta) = (grant.clone(), meta.with_org(grant.org_id));
        let revoked = self.shares.execute(&share_id(id), ShareCommand::Revoke { by: caller.user_id }, &meta).await?;
        let closed = self.close_on_record(&grant, id, &meta).await?;
        Ok(closed.or(revoked))
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
        let (grant, meta) = (grant.clone(), meta.with_org(grant.org_id));
        let removed = self.shares.execute(&share_id(id), ShareCommand::Remove { by: caller.user_id }, &meta).await?;
        let closed = self.close_on_record(&grant, id, &meta).await?;
        Ok(closed.or(removed))
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
        let key = secret.key_epoch().unwrap_or_default();
        // Every open share must get the new key, or its recipient would lose access: those open on
        // the record (decided by its own stream, and checked again when the rotation appends), and
        // those the shares view lists (granted before records kept their shares).
        let listed: Vec<Uuid> = sqlx::query_scalar(
            "SELECT share_id FROM kv_shares WHERE owner_id = $1 AND key_name = $2 AND state = 'active'
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(caller.user_id.as_uuid())
        .bind(key_name.as_str())
        .fetch_all(self.pool())
        .await?;
        let candidates: BTreeSet<Uuid> =
            secret.open_shares().iter().copied().chain(listed).chain(rewraps.iter().map(|(s, _)| *s)).collect();
        let (mut rewrapped, mut ended) = (BTreeSet::new(), BTreeSet::new());
        let now = Utc::now();
        for share in candidates {
            let state = self.shares.load(&share_id(share)).await?;
            let open = state.open_at(now).is_some_and(|g| {
                g.owner == caller.user_id && g.record.key_name() == Some(key_name) && g.life == key.life
            });
            if !open {
                // Ended, expired, or not this record's: it needs no key.
                ended.insert(share);
                continue;
            }
            let Some((_, wrap)) = rewraps.iter().find(|(s, _)| *s == share) else {
                return Err(Error::Conflict(format!(
                    "share {share} was granted meanwhile and has no wrap of the new key; retry"
                )));
            };
            let command = ShareCommand::Rewrap { epoch: new_epoch, rotation, wrap: wrap.clone() };
            self.shares.execute(&share_id(share), command, &meta.clone().with_org(org)).await?;
            rewrapped.insert(share);
        }
        let rotation = Rotation { id: rotation, rewrapped, ended };
        let check = VersionCheck { current: Some(expected_version), becomes: None };
        self.write_secret(caller, key_name, envelope, check, KeyUse::Rotate(rotation), meta).await
    }
}
