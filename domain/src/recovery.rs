//! The Recovery aggregate: one owner's trusted-user recovery. It holds the recovery share the
//! owner made for each trustee (their private keys encrypted to the trustee, masked by an answer
//! when `xor_applied`), and at most one pending restore a trustee submitted. A restore never
//! replaces the owner's keys: the owner completes it through the Proxy (temporary secret, answer,
//! new secret), and until then `requiresRekey` is shown and the old secret keeps working.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

use uuid::Uuid;

use crate::ids::{OrgId, UserId};
use crate::values::KeyBlob;

/// A recovery share or a restore: two blobs and how they are masked (the hint is the owner's own
/// reminder of the answer, never the answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryMaterial {
    pub ecc: KeyBlob,
    pub kyber: KeyBlob,
    pub xor_applied: bool,
    pub xor_salt_hint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRestore {
    pub trustee: UserId,
    pub material: RecoveryMaterial,
    /// Names this restore in its completion challenge (nil for restores submitted before there was one).
    #[serde(default)]
    pub restore_id: Uuid,
    /// When the trustee submitted it (absent for restores submitted before restores expired).
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
}

impl PendingRestore {
    /// A restore older than `ttl` is void, and so is one from before restores had a time.
    pub fn expired(&self, now: DateTime<Utc>, ttl: chrono::Duration) -> bool {
        self.submitted_at.is_none_or(|at| at + ttl <= now)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryCommand {
    SetTrustee {
        org_id: OrgId,
        owner: UserId,
        trustee: UserId,
        share: RecoveryMaterial,
    },
    RemoveTrustee {
        trustee: UserId,
    },
    SubmitRestore {
        trustee: UserId,
        restore: RecoveryMaterial,
        restore_id: Uuid,
        now: DateTime<Utc>,
    },
    /// Only while a restore is pending and younger than `ttl`.
    Complete {
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecoveryEvent {
    RecoveryTrusteeSet {
        owner: UserId,
        org_id: OrgId,
        trustee: UserId,
        share: RecoveryMaterial,
    },
    RecoveryTrusteeRemoved {
        owner: UserId,
        trustee: UserId,
    },
    RecoveryRestoreSubmitted {
        owner: UserId,
        trustee: UserId,
        restore: RecoveryMaterial,
        #[serde(default)]
        restore_id: Uuid,
        #[serde(default)]
        submitted_at: Option<DateTime<Utc>>,
    },
    RecoveryCompleted {
        owner: UserId,
        trustee: UserId,
    },
}

impl DomainEvent for RecoveryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::RecoveryTrusteeSet { .. } => "RecoveryTrusteeSet",
            Self::RecoveryTrusteeRemoved { .. } => "RecoveryTrusteeRemoved",
            Self::RecoveryRestoreSubmitted { .. } => "RecoveryRestoreSubmitted",
            Self::RecoveryCompleted { .. } => "RecoveryCompleted",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecoveryError {
    #[error("recovery share not found")]
    NotFound,
    #[error("you cannot be your own trustee")]
    SelfTrustee,
    #[error("no restore is pending for this user")]
    NothingPending,
    #[error("the pending restore expired: ask your trustee for a new one")]
    Expired,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Recovery {
    owner: Option<UserId>,
    org_id: Option<OrgId>,
    trustees: BTreeMap<UserId, RecoveryMaterial>,
    pending: Option<PendingRestore>,
}

impl Recovery {
    pub fn org_id(&self) -> Option<OrgId> {
        self.org_id
    }
    pub fn trustees(&self) -> &BTreeMap<UserId, RecoveryMaterial> {
        &self.trustees
    }
    pub fn share_for(&self, trustee: UserId) -> Option<&RecoveryMaterial> {
        self.trustees.get(&trustee)
    }
    pub fn pending(&self) -> Option<&PendingRestore> {
        self.pending.as_ref()
    }
}

impl Aggregate for Recovery {
    const TYPE: &'static str = "Recovery";
    type Command = RecoveryCommand;
    type Event = RecoveryEvent;
    type Error = RecoveryError;
    type Services = ();

    async fn handle(&mut self, command: RecoveryCommand, _: &(), sink: &EventSink<Self>) -> Result<(), RecoveryError> {
        match command {
            RecoveryCommand::SetTrustee { org_id, owner, trustee, share } => {
                if trustee == owner {
                    return Err(RecoveryError::SelfTrustee);
                }
                if self.trustees.get(&trustee) != Some(&share) {
                    sink.write(RecoveryEvent::RecoveryTrusteeSet { owner, org_id, trustee, share }, self).await;
                }
            }
            RecoveryCommand::RemoveTrustee { trustee } => {
                let owner =
                    self.owner.filter(|_| self.trustees.contains_key(&trustee)).ok_or(RecoveryError::NotFound)?;
                sink.write(RecoveryEvent::RecoveryTrusteeRemoved { owner, trustee }, self).await;
            }
            RecoveryCommand::SubmitRestore { trustee, restore, restore_id, now } => {
                // Only a trustee the owner configured; anyone else finds nothing.
                let owner =
                    self.owner.filter(|_| self.trustees.contains_key(&trustee)).ok_or(RecoveryError::NotFound)?;
                let submitted_at = Some(now);
                let event =
                    RecoveryEvent::RecoveryRestoreSubmitted { owner, trustee, restore, restore_id, submitted_at };
                sink.write(event, self).await;
            }
            RecoveryCommand::Complete { now, ttl } => {
                let (Some(owner), Some(pending)) = (self.owner, &self.pending) else {
                    return Err(RecoveryError::NothingPending);
                };
                if pending.expired(now, ttl) {
                    return Err(RecoveryError::Expired);
                }
                let trustee = pending.trustee;
                sink.write(RecoveryEvent::RecoveryCompleted { owner, trustee }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: RecoveryEvent) {
        match event {
            RecoveryEvent::RecoveryTrusteeSet { owner, org_id, trustee, share } => {
                self.owner = Some(owner);
                self.org_id = Some(org_id);
                self.trustees.insert(trustee, share);
            }
            RecoveryEvent::RecoveryTrusteeRemoved { trustee, .. } => {
                self.trustees.remove(&trustee);
                // A restore from a trustee who is no longer one is void.
                if self.pending.as_ref().is_some_and(|p| p.trustee == trustee) {
                    self.pending = None;
                }
            }
            RecoveryEvent::RecoveryRestoreSubmitted { trustee, restore, restore_id, submitted_at, .. } => {
                self.pending = Some(PendingRestore { trustee, material: restore, restore_id, submitted_at });
            }
            RecoveryEvent::RecoveryCompleted { .. } => self.pending = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }
    fn org() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(9))
    }
    fn material(fill: u8) -> RecoveryMaterial {
        let blob = |n| KeyBlob::parse("b", &STANDARD.encode(vec![fill; n]), 1..=16384).unwrap();
        RecoveryMaterial { ecc: blob(100), kyber: blob(200), xor_applied: true, xor_salt_hint: Some("dog-name".into()) }
    }
    fn set(trustee: u128) -> RecoveryEvent {
        RecoveryEvent::RecoveryTrusteeSet { owner: user(1), org_id: org(), trustee: user(trustee), share: material(1) }
    }

    #[test]
    fn an_owner_names_trustees_but_not_themselves() {
        TestFramework::<Recovery>::with(())
            .given_no_previous_events()
            .when(RecoveryCommand::SetTrustee { org_id: org(), owner: user(1), trustee: user(2), share: material(1) })
            .then_expect_events(vec![set(2)]);
        TestFramework::<Recovery>::with(())
            .given_no_previous_events()
            .when(RecoveryCommand::SetTrustee { org_id: org(), owner: user(1), trustee: user(1), share: material(1) })
            .then_expect_error(RecoveryError::SelfTrustee);
    }

    #[test]
    fn only_a_configured_trustee_submits_a_restore_and_it_completes_once_before_it_expires() {
        use chrono::TimeZone;
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let (id, ttl) = (Uuid::from_u128(5), chrono::Duration::days(7));
        let submitted = RecoveryEvent::RecoveryRestoreSubmitted {
            owner: user(1),
            trustee: user(2),
            restore: material(3),
            restore_id: id,
            submitted_at: Some(t0),
        };
        let submit = |trustee| RecoveryCommand::SubmitRestore {
            trustee: user(trustee),
            restore: material(3),
            restore_id: id,
            now: t0,
        };
        TestFramework::<Recovery>::with(())
            .given(vec![set(2)])
            .when(submit(2))
            .then_expect_events(vec![submitted.clone()]);
        TestFramework::<Recovery>::with(())
            .given(vec![set(2)])
            .when(submit(3))
            .then_expect_error(RecoveryError::NotFound);
        TestFramework::<Recovery>::with(())
            .given(vec![set(2), submitted.clone()])
            .when(RecoveryCommand::Complete { now: t0 + chrono::Duration::days(6), ttl })
            .then_expect_events(vec![RecoveryEvent::RecoveryCompleted { owner: user(1), trustee: user(2) }]);
        TestFramework::<Recovery>::with(())
            .given(vec![set(2), submitted.clone()])
            .when(RecoveryCommand::Complete { now: t0 + ttl, ttl })
            .then_expect_error(RecoveryError::Expired);
        // A restore from before restores had a time is void.
        let untimed = RecoveryEvent::RecoveryRestoreSubmitted {
            owner: user(1),
            trustee: user(2),
            restore: material(3),
            restore_id: Uuid::nil(),
            submitted_at: None,
        };
        TestFramework::<Recovery>::with(())
            .given(vec![set(2), untimed])
            .when(RecoveryCommand::Complete { now: t0, ttl })
            .then_expect_error(RecoveryError::Expired);
        TestFramework::<Recovery>::with(())
            .given(vec![set(2)])
            .when(RecoveryCommand::Complete { now: t0, ttl })
            .then_expect_error(RecoveryError::NothingPending);
        // Removing the trustee voids their restore.
        let mut recovery = Recovery::default();
        for e in [set(2), submitted, RecoveryEvent::RecoveryTrusteeRemoved { owner: user(1), trustee: user(2) }] {
            recovery.apply(e);
        }
        assert!(recovery.pending().is_none());
    }
}
