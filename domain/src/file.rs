//! The File aggregate: one encrypted file of one user.
//!
//! The file's content is ciphertext in the org's bucket, under an opaque object key (never the
//! file's name); the events hold only what the Backend may know: the name encrypted by the Proxy,
//! the data key wrapped for the owner, the content type, and the sizes. A file never changes once
//! stored. Deleting is soft and in two steps: `FileDeleted` takes the record away at once (nothing
//! live ever points at a missing object), `FileObjectRemoved` records that the object is gone from
//! the bucket, which a follower retries until the store answers.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::envelope;
use crate::ids::{OrgId, UserId};
use crate::values::{InvalidValue, KeyBlob};

/// The largest encrypted file name accepted (decoded): a name of up to 1 KiB of UTF-8, sealed.
pub const MAX_NAME_CIPHERTEXT: usize = 1024 + envelope::VALUE_OVERHEAD;
/// The largest plaintext file name the Proxy encrypts.
pub const MAX_NAME_BYTES: usize = 1024;

/// A MIME type as `type/subtype` (parameters allowed), at most 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentType(String);

impl ContentType {
    pub const MAX_LEN: usize = 255;
    pub const DEFAULT: &'static str = "application/octet-stream";

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let err = || InvalidValue("contentType must be a MIME type such as application/json".into());
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(err());
        }
        let essence = raw.split(';').next().unwrap_or_default().trim();
        let token =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
        match essence.split_once('/') {
            Some((kind, sub)) if token(kind) && token(sub) => Ok(Self(raw.to_owned())),
            _ => Err(err()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the Backend keeps about a stored file besides its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub encrypted_name: KeyBlob,
    pub wrap_ecc: KeyBlob,
    pub wrap_kyber: KeyBlob,
    pub content_type: ContentType,
    /// Bytes of the ciphertext object in the bucket.
    pub ciphertext_bytes: u64,
}

impl FileMeta {
    /// The file's plaintext size (the plan's limit is on it).
    pub fn file_bytes(&self) -> u64 {
        envelope::plaintext_len(self.ciphertext_bytes as usize).unwrap_or(0) as u64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileCommand {
    /// Records a file whose object was just written to the org's bucket under `object_key`.
    Store { file_id: Uuid, owner: UserId, org_id: OrgId, object_key: String, meta: FileMeta },
    /// The owner deletes the file.
    Delete { by: UserId },
    /// The object is gone from the bucket.
    ConfirmObjectRemoved,
    /// A share of the live file was granted (refused once the file is deleted); again: nothing.
    OpenShare { share_id: Uuid },
    /// A share of the file ended; nothing if it was not open.
    CloseShare { share_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FileEvent {
    FileStored {
        file_id: Uuid,
        owner: UserId,
        org_id: OrgId,
        object_key: String,
        /// Plaintext bytes, checked against the plan at append time.
        file_bytes: u64,
        meta: FileMeta,
    },
    FileDeleted {
        file_id: Uuid,
        owner: UserId,
        org_id: OrgId,
        object_key: String,
    },
    FileObjectRemoved {
        file_id: Uuid,
        owner: UserId,
        org_id: OrgId,
        object_key: String,
    },
    FileShareOpened {
        file_id: Uuid,
        share_id: Uuid,
    },
    FileShareClosed {
        file_id: Uuid,
        share_id: Uuid,
    },
}

impl DomainEvent for FileEvent {
    fn event_type(&self) -> String {
        match self {
            FileEvent::FileStored { .. } => "FileStored",
            FileEvent::FileDeleted { .. } => "FileDeleted",
            FileEvent::FileObjectRemoved { .. } => "FileObjectRemoved",
            FileEvent::FileShareOpened { .. } => "FileShareOpened",
            FileEvent::FileShareClosed { .. } => "FileShareClosed",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileError {
    #[error("file not found")]
    NotFound,
    #[error("this file id is taken")]
    AlreadyExists,
}

/// Where a file stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    #[default]
    Absent,
    Live,
    /// Deleted; its object may still be in the bucket.
    Deleted,
    /// Deleted, and its object is gone.
    Removed,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct File {
    identity: Option<(Uuid, UserId, OrgId, String)>,
    meta: Option<FileMeta>,
    state: FileState,
    /// The shares open on the live file (shares granted before they were kept here are not in it).
    #[serde(default)]
    shares: BTreeSet<Uuid>,
}

impl File {
    pub fn state(&self) -> FileState {
        self.state
    }

    /// The live file: its owner, org, object key and metadata.
    pub fn live(&self) -> Option<(UserId, OrgId, &str, &FileMeta)> {
        match (&self.identity, &self.meta, self.state) {
            (Some((_, owner, org, key)), Some(meta), FileState::Live) => Some((*owner, *org, key.as_str(), meta)),
            _ => None,
        }
    }

    /// The org and object key of a deleted file whose object may still be in the bucket.
    pub fn open_shares(&self) -> &BTreeSet<Uuid> {
        &self.shares
    }

    pub fn object_to_remove(&self) -> Option<(OrgId, &str)> {
        match (&self.identity, self.state) {
            (Some((_, _, org, key)), FileState::Deleted) => Some((*org, key.as_str())),
            _ => None,
        }
    }
}

impl Aggregate for File {
    const TYPE: &'static str = "File";
    type Command = FileCommand;
    type Event = FileEvent;
    type Error = FileError;
    type Services = ();

    async fn handle(&mut self, command: FileCommand, _: &(), sink: &EventSink<Self>) -> Result<(), FileError> {
        match command {
            FileCommand::Store { file_id, owner, org_id, object_key, meta } => {
                if self.state != FileState::Absent {
                    return Err(FileError::AlreadyExists);
                }
                let file_bytes = meta.file_bytes();
                sink.write(FileEvent::FileStored { file_id, owner, org_id, object_key, file_bytes, meta }, self).await;
            }
            FileCommand::Delete { by } => {
                let Some((file_id, owner, org_id, object_key)) = self.identity.clone() else {
                    return Err(FileError::NotFound);
                };
                if self.state != FileState::Live || owner != by {
                    return Err(FileError::NotFound);
                }
                sink.write(FileEvent::FileDeleted { file_id, owner, org_id, object_key }, self).await;
            }
            FileCommand::ConfirmObjectRemoved => {
                // Idempotent: only a deleted file's object is waited for.
                if let (Some((file_id, owner, org_id, object_key)), FileState::Deleted) =
                    (self.identity.clone(), self.state)
                {
                    sink.write(FileEvent::FileObjectRemoved { file_id, owner, org_id, object_key }, self).await;
                }
            }
            FileCommand::OpenShare { share_id } => {
                let (Some((file_id, ..)), FileState::Live) = (&self.identity, self.state) else {
                    return Err(FileError::NotFound);
                };
                if !self.shares.contains(&share_id) {
                    sink.write(FileEvent::FileShareOpened { file_id: *file_id, share_id }, self).await;
                }
            }
            FileCommand::CloseShare { share_id } => {
                if let (Some((file_id, ..)), true) = (&self.identity, self.shares.contains(&share_id)) {
                    sink.write(FileEvent::FileShareClosed { file_id: *file_id, share_id }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: FileEvent) {
        match event {
            FileEvent::FileStored { file_id, owner, org_id, object_key, meta, .. } => {
                self.identity = Some((file_id, owner, org_id, object_key));
                self.meta = Some(meta);
                self.state = FileState::Live;
            }
            FileEvent::FileDeleted { .. } => {
                self.state = FileState::Deleted;
                self.shares.clear();
            }
            FileEvent::FileShareOpened { share_id, .. } => {
                self.shares.insert(share_id);
            }
            FileEvent::FileShareClosed { share_id, .. } => {
                self.shares.remove(&share_id);
            }
            FileEvent::FileObjectRemoved { .. } => self.state = FileState::Removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }
    fn org() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(9))
    }
    fn meta(ciphertext_bytes: u64) -> FileMeta {
        let blob = |n| KeyBlob::parse("b", &STANDARD.encode(vec![3u8; n]), 1..=4096).unwrap();
        FileMeta {
            encrypted_name: blob(40),
            wrap_ecc: blob(33),
            wrap_kyber: blob(1149),
            content_type: ContentType::parse("application/json").unwrap(),
            ciphertext_bytes,
        }
    }
    fn store() -> FileCommand {
        FileCommand::Store {
            file_id: Uuid::from_u128(5),
            owner: user(1),
            org_id: org(),
            object_key: "obj".into(),
            meta: meta(29 + 100),
        }
    }
    fn stored() -> FileEvent {
        FileEvent::FileStored {
            file_id: Uuid::from_u128(5),
            owner: user(1),
            org_id: org(),
            object_key: "obj".into(),
            file_bytes: 100,
            meta: meta(29 + 100),
        }
    }
    fn deleted() -> FileEvent {
        FileEvent::FileDeleted { file_id: Uuid::from_u128(5), owner: user(1), org_id: org(), object_key: "obj".into() }
    }
    fn removed() -> FileEvent {
        FileEvent::FileObjectRemoved {
            file_id: Uuid::from_u128(5),
            owner: user(1),
            org_id: org(),
            object_key: "obj".into(),
        }
    }

    #[test]
    fn content_types_are_mime_types() {
        for ok in ["application/json", "text/plain; charset=utf-8", "application/vnd.api+json", "image/svg+xml"] {
            assert!(ContentType::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "json", "/json", "text/", "a/b\n", "tëxt/plain", &format!("a/{}", "b".repeat(300))] {
            assert!(ContentType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_file_is_stored_once_with_its_plaintext_size() {
        TestFramework::<File>::with(()).given_no_previous_events().when(store()).then_expect_events(vec![stored()]);
        TestFramework::<File>::with(()).given(vec![stored()]).when(store()).then_expect_error(FileError::AlreadyExists);
        assert_eq!(meta(29).file_bytes(), 0);
    }

    #[test]
    fn only_the_owner_deletes_a_live_file_and_the_object_removal_is_recorded_once() {
        TestFramework::<File>::with(())
            .given(vec![stored()])
            .when(FileCommand::Delete { by: user(1) })
            .then_expect_events(vec![deleted()]);
        TestFramework::<File>::with(())
            .given(vec![stored()])
            .when(FileCommand::Delete { by: user(2) })
            .then_expect_error(FileError::NotFound);
        TestFramework::<File>::with(())
            .given(vec![stored(), deleted()])
            .when(FileCommand::Delete { by: user(1) })
            .then_expect_error(FileError::NotFound);
        TestFramework::<File>::with(())
            .given(vec![stored(), deleted()])
            .when(FileCommand::ConfirmObjectRemoved)
            .then_expect_events(vec![removed()]);
        TestFramework::<File>::with(())
            .given(vec![stored(), deleted(), removed()])
            .when(FileCommand::ConfirmObjectRemoved)
            .then_expect_events(vec![]);
        TestFramework::<File>::with(())
            .given(vec![stored()])
            .when(FileCommand::ConfirmObjectRemoved)
            .then_expect_events(vec![]);
    }

    #[test]
    fn shares_open_on_a_live_file_only() {
        let share = Uuid::from_u128(8);
        let opened = FileEvent::FileShareOpened { file_id: Uuid::from_u128(5), share_id: share };
        TestFramework::<File>::with(())
            .given(vec![stored()])
            .when(FileCommand::OpenShare { share_id: share })
            .then_expect_events(vec![opened.clone()]);
        TestFramework::<File>::with(())
            .given(vec![stored(), opened.clone()])
            .when(FileCommand::OpenShare { share_id: share })
            .then_expect_events(vec![]);
        TestFramework::<File>::with(())
            .given(vec![stored(), deleted()])
            .when(FileCommand::OpenShare { share_id: share })
            .then_expect_error(FileError::NotFound);
        TestFramework::<File>::with(())
            .given(vec![stored(), opened.clone()])
            .when(FileCommand::CloseShare { share_id: share })
            .then_expect_events(vec![FileEvent::FileShareClosed { file_id: Uuid::from_u128(5), share_id: share }]);
        TestFramework::<File>::with(())
            .given(vec![stored(), opened, deleted()])
            .when(FileCommand::CloseShare { share_id: share })
            .then_expect_events(vec![]);
    }
}
