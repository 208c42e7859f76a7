//! Encrypted files: the object in the org's bucket and the File aggregate that records it.
//!
//! Upload writes the object first, then appends `FileStored`; if the append fails (a plan limit
//! reached meanwhile, the database gone) the object is removed again, so neither side is left with
//! an orphan. Delete appends `FileDeleted` first (the record is gone at once, and nothing live ever
//! points at a missing object), then removes the object; if the store fails, the reaper
//! ([`Harden::remove_deleted_objects`]) retries until it answers, then records `FileObjectRemoved`.
//! Object keys are fresh random ids, never names. Only ciphertext reaches the bucket.

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use uuid::Uuid;

use harden_domain::envelope::VALUE_OVERHEAD;
use harden_domain::file::{ContentType, File, FileCommand, FileEvent, FileMeta, MAX_NAME_CIPHERTEXT};
use harden_domain::secret::MAX_WRAP_LEN;
use harden_domain::values::KeyBlob;
use harden_domain::{OrgId, UserId};

use crate::bus::{Committed, Meta};
use crate::credentials::Principal;
use crate::error::Error;
use crate::object_store;
use crate::service::Harden;
use crate::storage::{resolve_checked, NetworkPolicy, Reachable};

pub const FILE_NOT_FOUND: &str = "file not found";
pub const FREE_PLAN: &str = "file storage is not available on the free plan";

/// What the caller sends besides the content.
pub struct NewFile<'a> {
    pub encrypted_name_b64: &'a str,
    pub wrap_ecc_b64: &'a str,
    pub wrap_kyber_b64: &'a str,
    pub content_type: Option<&'a str>,
}

/// A file just stored.
pub struct StoredFile {
    pub file_id: Uuid,
    pub meta: FileMeta,
    pub committed: Committed,
}

/// The org's file limits as the append-time trigger keeps them.
#[derive(sqlx::FromRow)]
struct FileLimits {
    plan: String,
    max_files: i64,
    max_file_bytes: i64,
    files_used: i64,
}

fn plan_limit(limit: &str, max: i64, plan: &str) -> Error {
    Error::invalid(format!("plan limit reached: {limit} is {max} on the {plan} plan"))
}

impl NewFile<'_> {
    fn meta(&self, ciphertext_bytes: usize) -> Result<FileMeta, Error> {
        if ciphertext_bytes < VALUE_OVERHEAD {
            return Err(Error::invalid(format!(
                "ciphertextB64 must decode to at least {VALUE_OVERHEAD} bytes (format version, nonce and tag)"
            )));
        }
        Ok(FileMeta {
            encrypted_name: KeyBlob::parse(
                "encryptedFileNameB64",
                self.encrypted_name_b64,
                VALUE_OVERHEAD..=MAX_NAME_CIPHERTEXT,
            )?,
            wrap_ecc: KeyBlob::parse("encryptedAesKeyEccB64", self.wrap_ecc_b64, 1..=MAX_WRAP_LEN)?,
            wrap_kyber: KeyBlob::parse("encryptedAesKeyKyberB64", self.wrap_kyber_b64, 1..=MAX_WRAP_LEN)?,
            content_type: ContentType::parse(self.content_type.unwrap_or(ContentType::DEFAULT))?,
            ciphertext_bytes: ciphertext_bytes as u64,
        })
    }
}

impl Harden {
    /// The org's bucket, reachable under the network policy, or why not.
    async fn bucket_of(&self, org: OrgId, policy: &NetworkPolicy) -> Result<Option<Reachable>, Error> {
        let state = self.orgs.load(&org.to_string()).await?;
        let Some(settings) = state.storage().cloned() else { return Ok(None) };
        let secret_key = self.sealer().open(org, &settings.sealed_secret_key)?;
        let address = resolve_checked(&settings.service_url, policy)
            .await
            .map_err(|e| Error::Upstream(format!("file storage is unreachable: {e}")))?;
        Ok(Some(Reachable { settings, secret_key, address }))
    }

    /// Checks the plan and the storage before anything is uploaded.
    async fn bucket_for_upload(&self, org: OrgId, file_bytes: u64, policy: &NetworkPolicy) -> Result<Reachable, Error> {
        let limits: FileLimits =
            sqlx::query_as("SELECT plan, max_files, max_file_bytes, files_used FROM org_limits WHERE org_id = $1")
                .bind(org.as_uuid())
                .fetch_optional(self.pool())
                .await?
                .ok_or_else(|| Error::not_found(crate::access::ORG_NOT_FOUND))?;
        if limits.max_files == 0 {
            return Err(Error::invalid(FREE_PLAN));
        }
        if file_bytes > limits.max_file_bytes as u64 {
            return Err(plan_limit("maxFileSizeBytes", limits.max_file_bytes, &limits.plan));
        }
        // The trigger decides under races; this spares an upload that would be refused.
        if limits.files_used >= limits.max_files {
            return Err(plan_limit("maxFiles", limits.max_files, &limits.plan));
        }
        self.bucket_of(org, policy).await?.ok_or_else(|| {
            Error::invalid(format!(
                "file storage is not configured for this organization: an org admin must set it with PUT /admin/orgs/{org}/storage"
            ))
        })
    }

    /// Stores a file of the caller: the ciphertext goes to the org's bucket, then the event.
    pub async fn upload_file(
        &self,
        caller: &Principal,
        new: NewFile<'_>,
        ciphertext: Bytes,
        policy: &NetworkPolicy,
        meta: Meta,
    ) -> Result<StoredFile, Error> {
        let org = crate::access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no files"))?;
        let file_meta = new.meta(ciphertext.len())?;
        let bucket = self.bucket_for_upload(org, file_meta.file_bytes(), policy).await?;
        let client = object_store::client(&bucket)?;
        let file_id = Uuid::new_v4();
        let object_key = Uuid::new_v4().simple().to_string();
        client
            .put_object()
            .bucket(&bucket.settings.bucket)
            .key(&object_key)
            .content_length(ciphertext.len() as i64)
            .content_type("application/octet-stream")
            .body(ByteStream::from(ciphertext))
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("file storage failed: {}", object_store::describe(&e))))?;
        let command = FileCommand::Store {
            file_id,
            owner: caller.user_id,
            org_id: org,
            object_key: object_key.clone(),
            meta: file_meta.clone(),
        };
        match self.files.execute(&file_id.to_string(), command, &meta.with_org(org)).await {
            Ok(committed) => Ok(StoredFile { file_id, meta: file_meta, committed }),
            Err(e) => {
                if let Err(cleanup) = object_store::delete(&client, &bucket.settings.bucket, &object_key).await {
                    tracing::error!(%file_id, error = %cleanup, "an uploaded object whose record was refused could not be removed");
                }
                Err(e)
            }
        }
    }

    /// A live file of `owner` (for the owner, or for a recipient the caller checked): its metadata
    /// and its ciphertext as a stream from the bucket.
    pub async fn open_file(
        &self,
        owner: UserId,
        file_id: Uuid,
        policy: &NetworkPolicy,
    ) -> Result<(FileMeta, ByteStream), Error> {
        let file = self.live_file(owner, file_id).await?;
        let (_, org, object_key, meta) = file.live().ok_or_else(|| Error::not_found(FILE_NOT_FOUND))?;
        let bucket = self
            .bucket_of(org, policy)
            .await?
            .ok_or_else(|| Error::Upstream("file storage is no longer configured for this organization".into()))?;
        let client = object_store::client(&bucket)?;
        let object = client
            .get_object()
            .bucket(&bucket.settings.bucket)
            .key(object_key)
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("file storage failed: {}", object_store::describe(&e))))?;
        Ok((meta.clone(), object.body))
    }

    /// A live file of `owner`, from the event store.
    pub async fn live_file(&self, owner: UserId, file_id: Uuid) -> Result<File, Error> {
        let file = self.files.load(&file_id.to_string()).await?;
        match file.live() {
            Some((file_owner, ..)) if file_owner == owner => Ok(file),
            _ => Err(Error::not_found(FILE_NOT_FOUND)),
        }
    }

    /// The owner deletes a file: the record first, then the object (retried later if the store fails).
    pub async fn delete_file(
        &self,
        caller: &Principal,
        file_id: Uuid,
        policy: &NetworkPolicy,
        meta: Meta,
    ) -> Result<Committed, Error> {
        let org = crate::access::own_org(caller).map_err(|_| Error::not_found(FILE_NOT_FOUND))?;
        let delete = FileCommand::Delete { by: caller.user_id };
        let (committed, events) = self.files.run(&file_id.to_string(), delete, &meta.clone().with_org(org)).await?;
        // The deletion's event names the object: no second load to find it.
        if let Some(FileEvent::FileDeleted { org_id, object_key, .. }) = events.last() {
            if let Err(e) = self.remove_object_at(file_id, *org_id, object_key, policy, &meta).await {
                tracing::warn!(%file_id, error = %e, "a deleted file's object could not be removed yet; the reaper retries");
            }
        }
        Ok(committed)
    }

    /// Removes a deleted file's object from its bucket and records it (nothing to do otherwise).
    async fn remove_object(&self, file_id: Uuid, policy: &NetworkPolicy, meta: &Meta) -> Result<(), Error> {
        let file: File = self.files.load(&file_id.to_string()).await?;
        match file.object_to_remove() {
            Some((org, object_key)) => self.remove_object_at(file_id, org, object_key, policy, meta).await,
            None => Ok(()),
        }
    }

    async fn remove_object_at(
        &self,
        file_id: Uuid,
        org: OrgId,
        object_key: &str,
        policy: &NetworkPolicy,
        meta: &Meta,
    ) -> Result<(), Error> {
        if let Some(bucket) = self.bucket_of(org, policy).await? {
            let client = object_store::client(&bucket)?;
            object_store::delete(&client, &bucket.settings.bucket, object_key)
                .await
                .map_err(|e| Error::Upstream(format!("file storage failed: {e}")))?;
        }
        self.files
            .execute(&file_id.to_string(), FileCommand::ConfirmObjectRemoved, &meta.clone().with_org(org))
            .await?;
        Ok(())
    }

    /// One pass of the reaper over deleted files (from the read model's queue): removes their
    /// objects. Answers how many were removed; failures are logged and retried on the next pass.
    pub async fn remove_deleted_objects(&self, pending: Vec<Uuid>, policy: &NetworkPolicy) -> usize {
        let mut removed = 0;
        for file_id in pending {
            match self.remove_object(file_id, policy, &Meta::default()).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(%file_id, error = %e, "a deleted file's object could not be removed yet"),
            }
        }
        removed
    }
}

/// A file share opened by its recipient: the file's metadata with the recipient's wrap, and its
/// ciphertext as a stream from the bucket.
pub struct SharedFile {
    pub share_id: Uuid,
    pub owner: UserId,
    pub file_id: Uuid,
    pub meta: FileMeta,
    pub encrypted_alias: KeyBlob,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub content: ByteStream,
}

/// A file's one life and one key epoch: a file never changes, so its shares never need a rewrap.
const FILE_EPOCH: u64 = 1;

impl Harden {
    /// Shares the caller's live file with a user of their org (the wrap and alias made by the Proxy).
    pub async fn grant_file_share(
        &self,
        caller: &Principal,
        file_id: Uuid,
        new: crate::sharing::NewShare<'_>,
        meta: Meta,
    ) -> Result<(Uuid, Committed), Error> {
        use harden_domain::share::{Grant, ShareCommand, SharedRecord};
        let (org, wrap, encrypted_alias) = self.check_grant(caller, &new).await?;
        self.live_file(caller.user_id, file_id).await?;
        let record = SharedRecord::File { file_id };
        let id = self.ids().share_id(caller.user_id, &record, new.recipient, FILE_EPOCH);
        let grant = Grant {
            org_id: org,
            owner: caller.user_id,
            recipient: new.recipient,
            record,
            life: FILE_EPOCH,
            epoch: FILE_EPOCH,
            rotation: None,
            wrap,
            encrypted_alias,
            expires_at: new.expires_at,
        };
        let (share, meta) = (crate::sharing::share_id(id), meta.with_org(org));
        let command = ShareCommand::Grant { share_id: share.clone(), grant, now: chrono::Utc::now() };
        self.shares.execute(&share, command, &meta).await.map_err(|e| match e {
            Error::Conflict(_) => Error::Conflict("this file is already shared with this user".into()),
            other => other,
        })?;
        // Open it on the file: a deletion that committed meanwhile refuses it.
        let open = harden_domain::file::FileCommand::OpenShare { share_id: id };
        match self.files.execute(&file_id.to_string(), open, &meta).await {
            Ok(committed) => Ok((id, committed)),
            Err(Error::NotFound(_)) => {
                self.shares.execute(&share, ShareCommand::Revoke { by: caller.user_id }, &meta).await?;
                Err(Error::not_found(FILE_NOT_FOUND))
            }
            Err(other) => Err(other),
        }
    }

    /// The owner ends a share of their file; the recipient is refused from now on. (A file never
    /// changes, so there is no key to rotate: what the recipient could read, they have read.)
    pub async fn revoke_file_share(
        &self,
        caller: &Principal,
        file_id: Uuid,
        id: Uuid,
        meta: Meta,
    ) -> Result<Committed, Error> {
        use harden_domain::share::ShareCommand;
        let share = self.shares.load(&crate::sharing::share_id(id)).await?;
        let grant = share.active().ok_or_else(|| Error::not_found(crate::sharing::SHARE_NOT_FOUND))?;
        if grant.owner != caller.user_id || grant.record.file_id() != Some(file_id) {
            return Err(Error::not_found(crate::sharing::SHARE_NOT_FOUND));
        }
        let meta = meta.with_org(grant.org_id);
        let revoked = self
            .shares
            .execute(&crate::sharing::share_id(id), ShareCommand::Revoke { by: caller.user_id }, &meta)
            .await?;
        let close = harden_domain::file::FileCommand::CloseShare { share_id: id };
        let closed = self.files.execute(&file_id.to_string(), close, &meta).await?;
        Ok(closed.or(revoked))
    }

    /// The recipient opens a file share. Decided from the event store (the Share and the File),
    /// so a revocation, an expiry or the file's deletion refuses the recipient at once.
    pub async fn read_file_share(
        &self,
        caller: &Principal,
        id: Uuid,
        policy: &NetworkPolicy,
    ) -> Result<SharedFile, Error> {
        let not_found = || Error::not_found(crate::sharing::SHARE_NOT_FOUND);
        let share = self.shares.load(&crate::sharing::share_id(id)).await?;
        let grant =
            share.open_at(chrono::Utc::now()).filter(|g| g.recipient == caller.user_id).ok_or_else(not_found)?;
        let file_id = grant.record.file_id().ok_or_else(not_found)?;
        let wrap = share.wrap_for(FILE_EPOCH, None).cloned().ok_or_else(not_found)?;
        let (mut meta, content) = self.open_file(grant.owner, file_id, policy).await.map_err(|e| match e {
            Error::NotFound(_) => not_found(),
            other => other,
        })?;
        meta.wrap_ecc = wrap.ecc;
        meta.wrap_kyber = wrap.kyber;
        Ok(SharedFile {
            share_id: id,
            owner: grant.owner,
            file_id,
            meta,
            encrypted_alias: grant.encrypted_alias.clone(),
            expires_at: grant.expires_at,
            content,
        })
    }
}
