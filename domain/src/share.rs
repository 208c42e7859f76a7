//! The Share aggregate: one user's read access to another user's KV record or file.
//!
//! A share holds the record's data key wrapped to the recipient, once per key epoch of the record
//! (see [`crate::secret::KeyEpoch`]): updates keep the key, so the share follows them with no
//! re-wrapping; a rotation (after a revocation) first adds the wrap of the new epoch to every
//! remaining share, then writes the record under the new key. The share is bound to the life of the
//! record it was granted on: when the owner deletes the record, it ends, and a record re-created
//! under the same name is not shared. The alias is encrypted to the recipient by the Proxy.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::ids::{OrgId, UserId};
use crate::secret::KeyName;
use crate::values::KeyBlob;

/// The data key wrapped to the recipient: `encryptedAesKeyEccB64` and `encryptedAesKeyKyberB64`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrap {
    pub ecc: KeyBlob,
    pub kyber: KeyBlob,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub org_id: OrgId,
    pub owner: UserId,
    pub recipient: UserId,
    /// What is shared (stored as `key_name` or `file_id` beside the other fields).
    #[serde(flatten)]
    pub record: SharedRecord,
    /// The life of the record shared (the version it began at).
    pub life: u64,
    pub epoch: u64,
    /// The rotation that made the epoch's key, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Uuid>,
    pub wrap: Wrap,
    pub encrypted_alias: KeyBlob,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a share gives access to. A file never changes, so it has one life and one key epoch (1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SharedRecord {
    Kv { key_name: KeyName },
    File { file_id: Uuid },
}

impl SharedRecord {
    pub fn key_name(&self) -> Option<&KeyName> {
        match self {
            SharedRecord::Kv { key_name } => Some(key_name),
            SharedRecord::File { .. } => None,
        }
    }

    pub fn file_id(&self) -> Option<Uuid> {
        match self {
            SharedRecord::File { file_id } => Some(*file_id),
            SharedRecord::Kv { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ShareCommand {
    Grant {
        share_id: String,
        grant: Grant,
        now: DateTime<Utc>,
    },
    /// The wrap for a new key epoch, ahead of the rotation that writes the record under it.
    Rewrap {
        epoch: u64,
        rotation: Uuid,
        wrap: Wrap,
    },
    /// The owner ends the share.
    Revoke {
        by: UserId,
    },
    /// The recipient gives up their access.
    Remove {
        by: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShareEvent {
    ShareGranted {
        share_id: String,
        grant: Grant,
    },
    ShareRewrapped {
        share_id: String,
        epoch: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rotation: Option<Uuid>,
        wrap: Wrap,
    },
    ShareRevoked {
        share_id: String,
    },
    ShareRemoved {
        share_id: String,
    },
}

impl DomainEvent for ShareEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ShareGranted { .. } => "ShareGranted",
            Self::ShareRewrapped { .. } => "ShareRewrapped",
            Self::ShareRevoked { .. } => "ShareRevoked",
            Self::ShareRemoved { .. } => "ShareRemoved",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShareError {
    #[error("share not found")]
    NotFound,
    #[error("this share already exists")]
    AlreadyExists,
    #[error("expiresUtc must be in the future")]
    ExpiryInThePast,
    #[error("permission must be \"read\"")]
    UnknownPermission,
}

/// The only permission a share grants.
pub const READ: &str = "read";

/// The terms of a grant on their own (the permission and the expiry), checked by every front end
/// before anything is looked up, so a bad request is refused whatever exists.
pub fn check_terms(permission: &str, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), ShareError> {
    if permission != READ {
        return Err(ShareError::UnknownPermission);
    }
    if expires_at.is_some_and(|at| at <= now) {
        return Err(ShareError::ExpiryInThePast);
    }
    Ok(())
}

/// The recipient's wrap of the key of one epoch (and rotation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EpochWrap {
    epoch: u64,
    rotation: Option<Uuid>,
    wrap: Wrap,
}

/// Wraps kept per share: the newest ones (an older epoch's key opens no version the record uses).
const WRAPS_KEPT: usize = 8;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Share {
    id: Option<String>,
    grant: Option<Grant>,
    wraps: Vec<EpochWrap>,
    ended: bool,
}

impl Share {
    /// The grant, while the share has not been revoked or removed (expiry is the reader's check).
    pub fn active(&self) -> Option<&Grant> {
        self.grant.as_ref().filter(|_| !self.ended)
    }

    /// Whether the share gives access at `now`.
    pub fn open_at(&self, now: DateTime<Utc>) -> Option<&Grant> {
        self.active().filter(|g| g.expires_at.is_none_or(|e| e > now))
    }

    /// The wrap of the key the record uses now: its epoch and the rotation that made it.
    pub fn wrap_for(&self, epoch: u64, rotation: Option<Uuid>) -> Option<&Wrap> {
        self.wraps.iter().rev().find(|w| w.epoch == epoch && w.rotation == rotation).map(|w| &w.wrap)
    }

    fn live_id(&self) -> Result<String, ShareError> {
        match (&self.id, self.ended) {
            (Some(id), false) => Ok(id.clone()),
            _ => Err(ShareError::NotFound),
        }
    }
}

impl Aggregate for Share {
    const TYPE: &'static str = "Share";
    type Command = ShareCommand;
    type Event = ShareEvent;
    type Error = ShareError;
    type Services = ();

    async fn handle(&mut self, command: ShareCommand, _: &(), sink: &EventSink<Self>) -> Result<(), ShareError> {
        match command {
            ShareCommand::Grant { share_id, grant, now } => {
                if grant.expires_at.is_some_and(|e| e <= now) {
                    return Err(ShareError::ExpiryInThePast);
                }
                // One share per owner, record, recipient and life (its id is derived from them): while it
                // is open, a second grant is a duplicate; once it ended or expired, granting again
                // opens it anew, with the new grant's wrap and terms.
                if self.open_at(now).is_some() {
                    return Err(ShareError::AlreadyExists);
                }
                sink.write(ShareEvent::ShareGranted { share_id, grant }, self).await;
            }
            ShareCommand::Rewrap { epoch, rotation, wrap } => {
                let share_id = self.live_id()?;
                if self.wrap_for(epoch, Some(rotation)) != Some(&wrap) {
                    let rotation = Some(rotation);
                    sink.write(ShareEvent::ShareRewrapped { share_id, epoch, rotation, wrap }, self).await;
                }
            }
            ShareCommand::Revoke { by } => {
                let share_id = self.live_id()?;
                if self.grant.as_ref().map(|g| g.owner) != Some(by) {
                    return Err(ShareError::NotFound);
                }
                sink.write(ShareEvent::ShareRevoked { share_id }, self).await;
            }
            ShareCommand::Remove { by } => {
                let share_id = self.live_id()?;
                if self.grant.as_ref().map(|g| g.recipient) != Some(by) {
                    return Err(ShareError::NotFound);
                }
                sink.write(ShareEvent::ShareRemoved { share_id }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ShareEvent) {
        match event {
            ShareEvent::ShareGranted { share_id, grant } => {
                self.id = Some(share_id);
                self.ended = false;
                self.wraps.clear();
                self.wraps.push(EpochWrap { epoch: grant.epoch, rotation: grant.rotation, wrap: grant.wrap.clone() });
                self.grant = Some(grant);
            }
            ShareEvent::ShareRewrapped { epoch, rotation, wrap, .. } => {
                self.wraps.push(EpochWrap { epoch, rotation, wrap });
                // Drop the oldest epochs first (never by arrival: a stale rotation's wrap may be
                // newer than the live one).
                while self.wraps.len() > WRAPS_KEPT {
                    let oldest = self.wraps.iter().enumerate().min_by_key(|(_, w)| w.epoch).map(|(i, _)| i);
                    if let Some(i) = oldest {
                        self.wraps.remove(i);
                    }
                }
            }
            ShareEvent::ShareRevoked { .. } | ShareEvent::ShareRemoved { .. } => self.ended = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, hour, 0, 0).unwrap()
    }
    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }
    fn wrap(fill: u8) -> Wrap {
        let blob = |n| KeyBlob::parse("w", &STANDARD.encode(vec![fill; n]), 1..=4096).unwrap();
        Wrap { ecc: blob(33), kyber: blob(1149) }
    }
    fn grant(expires_at: Option<DateTime<Utc>>) -> Grant {
        Grant {
            org_id: OrgId::from_uuid(Uuid::from_u128(9)),
            owner: user(1),
            recipient: user(2),
            record: SharedRecord::Kv { key_name: KeyName::parse("db").unwrap() },
            life: 1,
            epoch: 1,
            rotation: None,
            wrap: wrap(1),
            encrypted_alias: KeyBlob::parse("a", &STANDARD.encode([7u8; 40]), 1..=4096).unwrap(),
            expires_at,
        }
    }
    fn granted() -> ShareEvent {
        ShareEvent::ShareGranted { share_id: "s1".into(), grant: grant(Some(at(12))) }
    }

    #[test]
    fn a_grant_needs_a_future_expiry() {
        TestFramework::<Share>::with(())
            .given_no_previous_events()
            .when(ShareCommand::Grant { share_id: "s1".into(), grant: grant(Some(at(12))), now: at(11) })
            .then_expect_events(vec![granted()]);
        TestFramework::<Share>::with(())
            .given_no_previous_events()
            .when(ShareCommand::Grant { share_id: "s1".into(), grant: grant(Some(at(11))), now: at(11) })
            .then_expect_error(ShareError::ExpiryInThePast);
        TestFramework::<Share>::with(())
            .given(vec![granted()])
            .when(ShareCommand::Grant { share_id: "s1".into(), grant: grant(None), now: at(1) })
            .then_expect_error(ShareError::AlreadyExists);
    }

    #[test]
    fn an_ended_or_expired_share_is_granted_anew_with_only_the_new_wrap() {
        let again = Grant { wrap: wrap(9), ..grant(None) };
        let regranted = ShareEvent::ShareGranted { share_id: "s1".into(), grant: again.clone() };
        TestFramework::<Share>::with(())
            .given(vec![granted(), ShareEvent::ShareRevoked { share_id: "s1".into() }])
            .when(ShareCommand::Grant { share_id: "s1".into(), grant: again.clone(), now: at(1) })
            .then_expect_events(vec![regranted.clone()]);
        TestFramework::<Share>::with(())
            .given(vec![granted()])
            .when(ShareCommand::Grant { share_id: "s1".into(), grant: again.clone(), now: at(13) })
            .then_expect_events(vec![regranted.clone()]);
        let mut share = Share::default();
        for e in [granted(), ShareEvent::ShareRemoved { share_id: "s1".into() }, regranted] {
            share.apply(e);
        }
        assert_eq!(share.open_at(at(20)), Some(&again));
        assert_eq!(share.wrap_for(1, None), Some(&wrap(9)), "the ended grant's wrap is gone");
    }

    #[test]
    fn only_the_owner_revokes_and_only_the_recipient_removes() {
        TestFramework::<Share>::with(())
            .given(vec![granted()])
            .when(ShareCommand::Revoke { by: user(1) })
            .then_expect_events(vec![ShareEvent::ShareRevoked { share_id: "s1".into() }]);
        TestFramework::<Share>::with(())
            .given(vec![granted()])
            .when(ShareCommand::Revoke { by: user(2) })
            .then_expect_error(ShareError::NotFound);
        TestFramework::<Share>::with(())
            .given(vec![granted()])
            .when(ShareCommand::Remove { by: user(2) })
            .then_expect_events(vec![ShareEvent::ShareRemoved { share_id: "s1".into() }]);
        TestFramework::<Share>::with(())
            .given(vec![granted(), ShareEvent::ShareRemoved { share_id: "s1".into() }])
            .when(ShareCommand::Revoke { by: user(1) })
            .then_expect_error(ShareError::NotFound);
    }

    #[test]
    fn rewrapping_adds_the_new_epoch_once() {
        let r = Uuid::from_u128(5);
        let rewrapped =
            ShareEvent::ShareRewrapped { share_id: "s1".into(), epoch: 5, rotation: Some(r), wrap: wrap(5) };
        TestFramework::<Share>::with(())
            .given(vec![granted()])
            .when(ShareCommand::Rewrap { epoch: 5, rotation: r, wrap: wrap(5) })
            .then_expect_events(vec![rewrapped.clone()]);
        TestFramework::<Share>::with(())
            .given(vec![granted(), rewrapped])
            .when(ShareCommand::Rewrap { epoch: 5, rotation: r, wrap: wrap(5) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn racing_rotations_keep_their_own_wraps_and_the_live_key_is_never_pruned() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut share = Share::default();
        share.apply(granted());
        for (rotation, fill) in [(a, 10), (b, 20)] {
            share.apply(ShareEvent::ShareRewrapped {
                share_id: "s1".into(),
                epoch: 6,
                rotation: Some(rotation),
                wrap: wrap(fill),
            });
        }
        // Whichever rotation's write won, its wrap is there.
        assert_eq!(share.wrap_for(6, Some(a)), Some(&wrap(10)));
        assert_eq!(share.wrap_for(6, Some(b)), Some(&wrap(20)));
        assert_eq!(share.wrap_for(1, None), Some(&wrap(1)));
        // Many failed rotations at later epochs do not push out the live epoch 6 before older ones.
        for epoch in 7..20 {
            share.apply(ShareEvent::ShareRewrapped {
                share_id: "s1".into(),
                epoch,
                rotation: Some(Uuid::from_u128(epoch as u128 + 100)),
                wrap: wrap(epoch as u8),
            });
        }
        assert!(share.wrap_for(19, Some(Uuid::from_u128(119))).is_some());
    }

    #[test]
    fn grants_of_records_and_files_keep_their_stored_shape() {
        let kv = serde_json::to_value(grant(None)).unwrap();
        assert_eq!(kv["key_name"], "db", "the shape of grants stored before files were shareable");
        assert!(kv.get("record").is_none());
        assert_eq!(serde_json::from_value::<Grant>(kv).unwrap(), grant(None));
        let file = Grant { record: SharedRecord::File { file_id: Uuid::from_u128(3) }, ..grant(None) };
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(json["file_id"], Uuid::from_u128(3).to_string());
        assert_eq!(serde_json::from_value::<Grant>(json).unwrap(), file);
    }

    #[test]
    fn an_expired_share_gives_no_access() {
        let mut share = Share::default();
        share.apply(granted());
        assert!(share.open_at(at(11)).is_some());
        assert!(share.open_at(at(12)).is_none());
        assert_eq!(share.wrap_for(1, None), Some(&wrap(1)));
    }
}
