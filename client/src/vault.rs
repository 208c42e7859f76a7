//! The vault's flows: unlocking the caller, writing and reading values, sharing them and rotating
//! their keys. Each flow takes what the caller presented (an API key, a user secret) and talks to
//! the Backend through [`Backend`]; whatever it decrypts stays in the caller's memory.
//!
//! Each record has its own data key, kept across its versions while its owner sealed it: a write
//! reuses the key only when the stored wrap carries a valid owner-seal tag (see
//! `harden_domain::crypto::owner_sealed`), otherwise it starts a fresh key and re-wraps it to every
//! open share (a rotation). Every value is bound to its org, owner, key name, version and key epoch,
//! and opened only as the version the Backend names.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use harden_domain::crypto::{self, DataKey, RecordContext};
use harden_domain::secret::KeyName;

use crate::backend::{Answer, Backend, Me};
use crate::credential::ApiCredential;
use crate::error::Error;
use crate::random;
use crate::unlock::{UnlockedKeys, Unlocker, NO_KEYS};
use crate::wire::{KvRecordResponse, KvVersionsResponse};

/// What the alias of a share is sealed under (with the owner's org, id and key name).
pub const ALIAS_KIND: &str = "share-alias";
/// The global admin has no keys and no records.
pub const GLOBAL_ADMIN_HAS_NO_RECORDS: &str = "the global admin has no KV records";

/// The Backend and the unlocker of one program: what every flow runs on.
#[derive(Clone)]
pub struct Vault {
    pub backend: Backend,
    pub unlocker: Arc<Unlocker>,
}

/// A user whose private keys are unlocked, with their profile and org.
pub struct Caller<'h> {
    pub api_key: ApiCredential<'h>,
    pub me: Me,
    pub org: Uuid,
    pub keys: Arc<UnlockedKeys>,
}

impl Caller<'_> {
    /// The caller's public keys, from the private keys just unlocked, after checking that the
    /// Backend shows the same: a tampered directory must not be able to redirect a data key.
    pub fn own_public_keys(&self) -> Result<crypto::PublicKeys, Error> {
        let (Some(ecc), Some(kyber)) = (&self.me.public_key_ecc_b64, &self.me.public_key_kyber_b64) else {
            return Err(Error::conflict(NO_KEYS));
        };
        let public = self.keys.keys.public_keys();
        if decode("publicKeyEccB64", ecc)? != public.ecc_bytes()
            || decode("publicKeyKyberB64", kyber)? != public.kyber_bytes()
        {
            return Err(anyhow::anyhow!("the Backend's public keys do not match the user's private keys").into());
        }
        Ok(public)
    }

    /// What the caller's record `name` is bound to.
    pub fn context<'n>(&self, name: &'n KeyName) -> RecordContext<'n> {
        RecordContext { kind: "kv", org: self.org, owner: self.me.id, name: name.as_str().as_bytes() }
    }
}

/// Who writes a value: its owner with their keys unlocked, or a holder of the owner's API key
/// alone (a write-only service such as a CI job), who encrypts to the owner's public keys with a
/// fresh data key and can neither read the value back nor seal the key.
pub enum Writer<'h> {
    Owner(Caller<'h>),
    KeyOnly { api_key: ApiCredential<'h>, me: Me, org: Uuid },
}

impl<'h> Writer<'h> {
    pub fn api_key(&self) -> ApiCredential<'h> {
        match self {
            Writer::Owner(caller) => caller.api_key,
            Writer::KeyOnly { api_key, .. } => *api_key,
        }
    }

    pub fn context<'n>(&self, name: &'n KeyName) -> RecordContext<'n> {
        let (org, owner) = self.org_and_owner();
        RecordContext { kind: "kv", org, owner, name: name.as_str().as_bytes() }
    }

    /// The owner's own wrap of `key` for `epoch`: owner-sealed when the owner's keys are unlocked,
    /// a plain wrap to the owner's public keys (as the Backend shows them) when only the API key is.
    pub fn wrap_for_owner(&self, name: &KeyName, epoch: u64, key: &DataKey) -> Result<(Vec<u8>, Vec<u8>), Error> {
        self.wrap_own(&self.context(name), epoch, key)
    }

    /// [`Self::wrap_for_owner`] under any of the owner's contexts (a record's, a file's).
    pub fn wrap_own(
        &self,
        context: &RecordContext<'_>,
        epoch: u64,
        key: &DataKey,
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        match self {
            Writer::Owner(caller) => {
                caller.own_public_keys()?;
                Ok(crypto::wrap_for_owner(&caller.keys.keys, context, epoch, key, &random(), random()))
            }
            Writer::KeyOnly { me, .. } => {
                let (Some(ecc), Some(kyber)) = (&me.public_key_ecc_b64, &me.public_key_kyber_b64) else {
                    return Err(Error::conflict(NO_KEYS));
                };
                let public = backend_public_keys(ecc, kyber)?;
                Ok(crypto::wrap_data_key(&public, me.id, context, key, &random(), random()))
            }
        }
    }

    /// The org and the owner the writer writes as.
    pub fn org_and_owner(&self) -> (Uuid, Uuid) {
        match self {
            Writer::Owner(caller) => (caller.org, caller.me.id),
            Writer::KeyOnly { me, org, .. } => (*org, me.id),
        }
    }

    /// The record's data key, when it may be used again: the owner's keys are unlocked and the
    /// stored wrap carries a valid owner-seal tag for its epoch. A key someone else wrapped to the
    /// owner (anyone can: a wrap needs only public keys) is never reused.
    fn sealed_key(&self, name: &KeyName, stored: &KvRecordResponse) -> Result<Option<DataKey>, Error> {
        let Writer::Owner(caller) = self else { return Ok(None) };
        let context = caller.context(name);
        let (ecc, kyber) = stored_wrap(stored)?;
        if !crypto::owner_sealed(&caller.keys.keys, &context, epoch_of(stored), &ecc, &kyber) {
            return Ok(None);
        }
        Ok(Some(unwrap_key(caller, &context, stored)?))
    }
}

/// A value opened for its owner.
pub struct OpenedValue {
    pub value: Zeroizing<Vec<u8>>,
    pub version: i64,
    /// The owner's own keys sealed this version's data key and the value is bound to its version.
    pub owner_sealed: bool,
}

/// What an owner asks for when sharing: to whom, on which terms, and the alias they will see.
pub struct ShareTerms<'a> {
    pub recipient: Uuid,
    pub permission: &'a str,
    pub alias: &'a str,
    pub expires_utc: Option<DateTime<Utc>>,
    /// The recipient's fingerprint as the owner compared it with them out of band.
    pub expected_fingerprint: Option<&'a str>,
}

/// One share in a recipient's inbox, its alias opened (`None` when it does not open).
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    /// `null` when the alias cannot be opened with the recipient's keys.
    pub alias: Option<String>,
    pub permission: String,
    pub expires_utc: Option<DateTime<Utc>>,
    pub version: i64,
}

/// A share opened by its recipient.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SharedValue {
    pub share_id: Uuid,
    pub owner_user_id: Uuid,
    pub alias: String,
    pub value_b64: String,
    pub version: u64,
    pub expires_utc: Option<DateTime<Utc>>,
    /// Whether the value is bound to the version it is served as (format 2). A format-1 value
    /// (written before versions were bound) opens at any version of its record, so an old one
    /// written back would read as current: `false` says so. (The owner's seal cannot be checked by
    /// a recipient, who holds no key of the owner's.)
    pub version_bound: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutgoingShare {
    share_id: Uuid,
    recipient_user_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboxEntry {
    share_id: Uuid,
    owner_user_id: Uuid,
    key: String,
    encrypted_alias_b64: String,
    permission: String,
    expires_utc: Option<DateTime<Utc>>,
    version: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SharedRecord {
    share_id: Uuid,
    owner_user_id: Uuid,
    key: String,
    version: u64,
    #[serde(default)]
    key_epoch: u64,
    ciphertext_b64: String,
    encrypted_aes_key_ecc_b64: String,
    encrypted_aes_key_kyber_b64: String,
    encrypted_alias_b64: String,
    expires_utc: Option<DateTime<Utc>>,
}

/// How often a write without If-Match that lost a race is tried again: one of n racing writers can
/// lose n - 1 times in a row, so this covers a dozen writers of one record at once.
const PUT_RETRIES: u32 = 12;

/// Whether the Backend refused a write only because another write of the record landed first: the
/// version it would become was taken (the answer names the current version), or the record's key
/// changed or a share was granted meanwhile (the Secret aggregate's own "retry" refusals).
fn lost_a_race(error: &Error) -> bool {
    let Error::Upstream(StatusCode::CONFLICT, body) = error else { return false };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    let message = body["error"].as_str().unwrap_or_default();
    body.get("currentVersion").is_some_and(|v| !v.is_null())
        || message == harden_domain::secret::SecretError::KeyChanged.to_string()
        || message.ends_with("has no wrap of the new key; retry")
}

impl Vault {
    /// The caller, their org and their private keys, unlocked with `secret`. Keys made before
    /// bundles existed get their bundle published now, so others can verify them.
    pub async fn unlock<'h>(&self, api_key: ApiCredential<'h>, secret: &str) -> Result<Caller<'h>, Error> {
        let me = self.backend.me(api_key).await?;
        self.unlock_profile(api_key, me, secret).await
    }

    /// [`Self::unlock`] of the profile `me` the Backend just answered for `api_key`.
    pub async fn unlock_profile<'h>(
        &self,
        api_key: ApiCredential<'h>,
        me: Me,
        secret: &str,
    ) -> Result<Caller<'h>, Error> {
        let org = me.org_id.ok_or_else(|| Error::status(StatusCode::FORBIDDEN, GLOBAL_ADMIN_HAS_NO_RECORDS))?;
        let keys = self.unlocker.unlock(&me, secret).await?;
        if me.key_bundle_b64.is_none() && me.public_key_ecc_b64.is_some() {
            if let Err(e) = crate::pins::publish_own(&self.backend, api_key, &keys.keys, org, me.id).await {
                tracing::warn!(error = ?e, "could not publish the user's key bundle; the next unlock tries again");
            }
        }
        Ok(Caller { api_key, me, org, keys })
    }

    /// The caller with private keys unlocked earlier (the command-line client's agent holds
    /// them): the profile `me` must show these keys' public keys, else 401 and the caller unlocks
    /// with the secret again (the keys were rekeyed or replaced meanwhile).
    pub fn resume<'h>(&self, api_key: ApiCredential<'h>, me: Me, keys: Arc<UnlockedKeys>) -> Result<Caller<'h>, Error> {
        let org = me.org_id.ok_or_else(|| Error::status(StatusCode::FORBIDDEN, GLOBAL_ADMIN_HAS_NO_RECORDS))?;
        let caller = Caller { api_key, me, org, keys };
        match caller.own_public_keys() {
            Ok(_) => Ok(caller),
            Err(_) => Err(Error::unauthorized("the unlocked keys are not this user's current keys")),
        }
    }

    /// The writer of a value: the owner, when their secret is given, else the API key alone.
    pub async fn writer<'h>(&self, api_key: ApiCredential<'h>, secret: Option<&str>) -> Result<Writer<'h>, Error> {
        if let Some(secret) = secret {
            return Ok(Writer::Owner(self.unlock(api_key, secret).await?));
        }
        let me = self.backend.me(api_key).await?;
        let org = me.org_id.ok_or_else(|| Error::status(StatusCode::FORBIDDEN, GLOBAL_ADMIN_HAS_NO_RECORDS))?;
        Ok(Writer::KeyOnly { api_key, me, org })
    }

    /// The record as the Backend stores it (`version`: an older version of its current life); a
    /// missing record is the Backend's own 404.
    async fn record(
        &self,
        api_key: ApiCredential<'_>,
        name: &KeyName,
        version: Option<u64>,
    ) -> Result<KvRecordResponse, Error> {
        let query = version.map(|v| format!("version={v}"));
        let answer =
            self.backend.call(Method::GET, &["kv", name.as_str()], query.as_deref(), api_key, None, &[]).await?;
        let stored: KvRecordResponse = answer.ok()?.json()?;
        if version.is_some_and(|v| v != stored.version as u64) {
            return Err(anyhow::anyhow!("the Backend answered another version than the one asked for").into());
        }
        Ok(stored)
    }

    /// Encrypts `value` and stores it as the record's next version, bound to that version (see the
    /// module doc for when the key is kept). `if_match` is passed on as the Backend's check-and-set.
    /// Answers the Backend's answer (201 for a new record or life, 200 for a new version).
    ///
    /// Without `if_match` the caller asked for no check-and-set, so a write that lost a race with
    /// another write of the record (the version it would become was taken, or the key changed) is
    /// read again and retried, a few times, as the next version: the last writer wins, as a PUT
    /// without If-Match promises. With `if_match` the 409 is the answer.
    pub async fn put_value(
        &self,
        writer: &Writer<'_>,
        name: &KeyName,
        value: &[u8],
        if_match: Option<u64>,
    ) -> Result<Answer, Error> {
        let mut attempt = 0u32;
        loop {
            match self.put_value_once(writer, name, value, if_match).await {
                Err(e) if if_match.is_none() && attempt < PUT_RETRIES && lost_a_race(&e) => {
                    attempt += 1;
                    let base = 2u64 << attempt.min(5);
                    tokio::time::sleep(std::time::Duration::from_millis(base + rand::random::<u64>() % (base * 2)))
                        .await;
                }
                other => return other,
            }
        }
    }

    async fn put_value_once(
        &self,
        writer: &Writer<'_>,
        name: &KeyName,
        value: &[u8],
        if_match: Option<u64>,
    ) -> Result<Answer, Error> {
        let if_match_header: Vec<(HeaderName, HeaderValue)> =
            if_match.map(|v| (IF_MATCH, HeaderValue::from(v))).into_iter().collect();
        let stored = match self.record(writer.api_key(), name, None).await {
            Ok(stored) => Some(stored),
            Err(Error::Upstream(StatusCode::NOT_FOUND, _)) => None,
            Err(other) => return Err(other),
        };
        match stored {
            // A new record (or a new life): a fresh key, its epoch the version it becomes.
            None => {
                let version = self.last_version(writer, name).await? + 1;
                let key = DataKey::from_bytes(random());
                let fields = json!({ "freshKey": true, "version": version });
                let at = crypto::VersionAt { version, epoch: version };
                self.write_version(writer, name, &if_match_header, &key, at, fields, value).await
            }
            Some(stored) => match writer.sealed_key(name, &stored)? {
                Some(key) if !stored.rotation_pending => {
                    let at = crypto::VersionAt { version: stored.version as u64 + 1, epoch: epoch_of(&stored) };
                    let fields = json!({ "keyEpoch": at.epoch, "version": at.version });
                    self.write_version(writer, name, &if_match_header, &key, at, fields, value).await
                }
                _ => self.rotate(writer, name, if_match.unwrap_or(stored.version as u64), value).await,
            },
        }
    }

    /// The highest version the record ever had, across deletes (0 for a name never written).
    async fn last_version(&self, writer: &Writer<'_>, name: &KeyName) -> Result<u64, Error> {
        let answer = self
            .backend
            .call(Method::GET, &["kv", name.as_str(), "versions"], None, writer.api_key(), None, &[])
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(0);
        }
        let versions: KvVersionsResponse = answer.ok()?.json()?;
        Ok(versions.versions.iter().map(|v| v.version as u64).max().unwrap_or(0))
    }

    /// `PUT /kv/{key}` of `value` as the version `at` under `key`, with `fields` (the key's use).
    #[allow(clippy::too_many_arguments)]
    async fn write_version(
        &self,
        writer: &Writer<'_>,
        name: &KeyName,
        headers: &[(HeaderName, HeaderValue)],
        key: &DataKey,
        at: crypto::VersionAt,
        fields: serde_json::Value,
        value: &[u8],
    ) -> Result<Answer, Error> {
        let ciphertext = crypto::encrypt_value_at(key, random(), &writer.context(name), at, value);
        let (wrap_ecc, wrap_kyber) = writer.wrap_for_owner(name, at.epoch, key)?;
        let mut request = json!({
            "ciphertextB64": STANDARD.encode(ciphertext),
            "encryptedAesKeyEccB64": STANDARD.encode(wrap_ecc),
            "encryptedAesKeyKyberB64": STANDARD.encode(wrap_kyber),
        });
        request.as_object_mut().expect("an object").extend(fields.as_object().expect("an object").clone());
        self.backend
            .call(Method::PUT, &["kv", name.as_str()], None, writer.api_key(), Some(&request), headers)
            .await?
            .ok()
    }

    /// The caller's value `name` (`version`: an older version of its current life), decrypted and
    /// checked to open as the version the Backend names (409 otherwise).
    pub async fn get_value(
        &self,
        caller: &Caller<'_>,
        name: &KeyName,
        version: Option<u64>,
    ) -> Result<OpenedValue, Error> {
        let stored = self.record(caller.api_key, name, version).await?;
        let context = caller.context(name);
        let data_key = unwrap_key(caller, &context, &stored)?;
        let epoch = epoch_of(&stored);
        let (value, bound) = open_value(&data_key, &context, stored.version as u64, epoch, &stored.ciphertext_b64)?;
        let (ecc, kyber) = stored_wrap(&stored)?;
        let owner_sealed = bound && crypto::owner_sealed(&caller.keys.keys, &context, epoch, &ecc, &kyber);
        Ok(OpenedValue { value, version: stored.version, owner_sealed })
    }

    /// The record's current version and data key, for its owner.
    async fn current(&self, caller: &Caller<'_>, name: &KeyName) -> Result<(KvRecordResponse, DataKey), Error> {
        let stored = self.record(caller.api_key, name, None).await?;
        let key = unwrap_key(caller, &caller.context(name), &stored)?;
        Ok((stored, key))
    }

    /// Writes `value` as the record's next version under a new data key (its epoch that version),
    /// wrapped for the owner (owner-sealed when the owner's keys are unlocked) and for every open
    /// share's recipient whose bundle verifies (against the owner's pins when the owner's keys are
    /// unlocked): a check-and-set on `expected_version`.
    pub async fn rotate(
        &self,
        writer: &Writer<'_>,
        name: &KeyName,
        expected_version: u64,
        value: &[u8],
    ) -> Result<Answer, Error> {
        let context = writer.context(name);
        let key = DataKey::from_bytes(random());
        let at = crypto::VersionAt { version: expected_version + 1, epoch: expected_version + 1 };
        let ciphertext = crypto::encrypt_value_at(&key, random(), &context, at, value);
        let (ecc, kyber) = writer.wrap_for_owner(name, at.epoch, &key)?;
        let remaining: Vec<OutgoingShare> = self
            .backend
            .call(Method::GET, &["kv", name.as_str(), "shares"], None, writer.api_key(), None, &[])
            .await?
            .ok()?
            .json()?;
        let mut shares = Vec::with_capacity(remaining.len());
        for share in remaining {
            let recipient = match writer {
                Writer::Owner(caller) => {
                    crate::pins::pinned_recipient(&self.backend, caller, share.recipient_user_id).await?
                }
                Writer::KeyOnly { api_key, org, .. } => {
                    crate::pins::bundle_keys(&self.backend, *api_key, *org, share.recipient_user_id).await?
                }
            };
            let (ecc, kyber) =
                crypto::wrap_data_key(&recipient, share.recipient_user_id, &context, &key, &random(), random());
            shares.push(json!({
                "shareId": share.share_id,
                "encryptedAesKeyEccB64": STANDARD.encode(ecc),
                "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
            }));
        }
        let body = json!({
            "expectedVersion": expected_version,
            "ciphertextB64": STANDARD.encode(ciphertext),
            "encryptedAesKeyEccB64": STANDARD.encode(ecc),
            "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
            "shares": shares,
        });
        self.backend
            .call(Method::POST, &["kv", name.as_str(), "rotate"], None, writer.api_key(), Some(&body), &[])
            .await?
            .ok()
    }

    /// Shares the caller's value with a user of their org: the data key re-wrapped to the
    /// recipient's verified and pinned keys, the alias sealed to them. Answers the Backend's answer
    /// (201 `{ "shareId" }`).
    pub async fn share_value(
        &self,
        caller: &Caller<'_>,
        name: &KeyName,
        terms: ShareTerms<'_>,
    ) -> Result<Answer, Error> {
        check_share_terms(terms.permission, terms.expires_utc, terms.alias)?;
        caller.own_public_keys()?;
        if terms.recipient == caller.me.id {
            return Err(Error::invalid("you cannot share a record with yourself"));
        }
        let (stored, data_key) = self.current(caller, name).await?;
        let recipient =
            crate::pins::verified_recipient(&self.backend, caller, terms.recipient, terms.expected_fingerprint).await?;
        let grant = Grant { recipient: terms.recipient, permission: terms.permission, expires_utc: terms.expires_utc };
        let alias = (name.as_str().as_bytes(), terms.alias.as_bytes());
        let mut body = grant_body(caller, &recipient, &grant, &caller.context(name), &data_key, alias);
        body["keyEpoch"] = json!(epoch_of(&stored));
        self.backend
            .call(Method::POST, &["kv", name.as_str(), "shares"], None, caller.api_key, Some(&body), &[])
            .await?
            .ok()
    }

    /// Revokes a share: the recipient is refused at once (the API key alone does it), and with the
    /// owner's secret the value's data key is rotated; without it (or if the rotation fails, say
    /// on a concurrent write), the record stays marked and the owner's next write rotates it.
    /// Answers whether the key was rotated.
    pub async fn revoke_share(
        &self,
        api_key: ApiCredential<'_>,
        secret: Option<&str>,
        name: &KeyName,
        share_id: Uuid,
    ) -> Result<bool, Error> {
        self.revoke(api_key, name, share_id).await?;
        let Some(secret) = secret else { return Ok(false) };
        let rotated = async {
            let caller = self.unlock(api_key, secret).await?;
            self.rotate_current(&caller, name).await
        }
        .await;
        match rotated {
            Ok(_) => Ok(true),
            Err(e) => {
                tracing::warn!(error = ?e, "rotating a record's key after a revocation failed; the next write rotates it");
                Ok(false)
            }
        }
    }

    /// Revokes a share of the caller's record (the API key alone does it): the recipient is refused at once.
    pub async fn revoke(&self, api_key: ApiCredential<'_>, name: &KeyName, share_id: Uuid) -> Result<(), Error> {
        let share = share_id.to_string();
        self.backend
            .call(Method::DELETE, &["kv", name.as_str(), "shares", &share], None, api_key, None, &[])
            .await?
            .ok()
            .map(drop)
    }

    /// Writes the record's current value again under a new data key (after a revocation), re-wrapped
    /// to the shares still open.
    pub async fn rotate_current(&self, caller: &Caller<'_>, name: &KeyName) -> Result<Answer, Error> {
        let (stored, key) = self.current(caller, name).await?;
        let at = (stored.version as u64, epoch_of(&stored));
        let (value, _) = open_value(&key, &caller.context(name), at.0, at.1, &stored.ciphertext_b64)?;
        let writer = Writer::Owner(Caller {
            api_key: caller.api_key,
            me: caller.me.clone(),
            org: caller.org,
            keys: caller.keys.clone(),
        });
        self.rotate(&writer, name, at.0, &value).await
    }

    /// The caller's inbox: shares of other users' values, with their aliases opened.
    pub async fn inbox(&self, caller: &Caller<'_>) -> Result<Vec<InboxItem>, Error> {
        let entries: Vec<InboxEntry> =
            self.backend.call(Method::GET, &["kv", "shared"], None, caller.api_key, None, &[]).await?.ok()?.json()?;
        Ok(entries
            .into_iter()
            .map(|entry| InboxItem {
                // An alias that does not open (made around a harden client) hides only itself.
                alias: open_alias(caller, entry.owner_user_id, &entry.key, &entry.encrypted_alias_b64).ok(),
                share_id: entry.share_id,
                owner_user_id: entry.owner_user_id,
                permission: entry.permission,
                expires_utc: entry.expires_utc,
                version: entry.version,
            })
            .collect())
    }

    /// Opens a share: the value, decrypted with the recipient's keys as the version the Backend names.
    pub async fn read_shared(&self, caller: &Caller<'_>, share_id: Uuid) -> Result<SharedValue, Error> {
        let record: SharedRecord = self
            .backend
            .call(Method::GET, &["kv", "shared", &share_id.to_string()], None, caller.api_key, None, &[])
            .await?
            .ok()?
            .json()?;
        let context =
            RecordContext { kind: "kv", org: caller.org, owner: record.owner_user_id, name: record.key.as_bytes() };
        let key = crypto::unwrap_data_key(
            &caller.keys.keys,
            caller.me.id,
            &context,
            &decode("encryptedAesKeyEccB64", &record.encrypted_aes_key_ecc_b64)?,
            &decode("encryptedAesKeyKyberB64", &record.encrypted_aes_key_kyber_b64)?,
        )
        .map_err(|_| Error::conflict(CANNOT_OPEN_SHARE))?;
        let (value, version_bound) =
            open_value(&key, &context, record.version, record.key_epoch, &record.ciphertext_b64)?;
        let alias = open_alias(caller, record.owner_user_id, &record.key, &record.encrypted_alias_b64)?;
        Ok(SharedValue {
            share_id: record.share_id,
            owner_user_id: record.owner_user_id,
            alias,
            value_b64: STANDARD.encode(value.as_slice()),
            version: record.version,
            expires_utc: record.expires_utc,
            version_bound,
        })
    }
}

/// Whom a grant is to, and on which terms.
pub(crate) struct Grant<'a> {
    pub recipient: Uuid,
    pub permission: &'a str,
    pub expires_utc: Option<DateTime<Utc>>,
}

/// A grant's body for the Backend: the data key wrapped to the recipient's `keys` under `context`,
/// and the alias sealed to them, bound to the owner's org and id and to `alias.0` (a record's key
/// name, a file's id).
pub(crate) fn grant_body(
    caller: &Caller<'_>,
    keys: &crypto::PublicKeys,
    grant: &Grant<'_>,
    context: &RecordContext<'_>,
    key: &DataKey,
    alias: (&[u8], &[u8]),
) -> serde_json::Value {
    let (ecc, kyber) = crypto::wrap_data_key(keys, grant.recipient, context, key, &random(), random());
    let sealed = crypto::seal_to(
        keys,
        grant.recipient,
        &alias_context(caller.org, caller.me.id, alias.0),
        alias.1,
        (&random(), &random(), random(), random()),
    );
    json!({
        "recipientUserId": grant.recipient,
        "permission": grant.permission,
        "encryptedAliasB64": STANDARD.encode(sealed),
        "encryptedAesKeyEccB64": STANDARD.encode(ecc),
        "encryptedAesKeyKyberB64": STANDARD.encode(kyber),
        "expiresUtc": grant.expires_utc,
    })
}

const CANNOT_OPEN_SHARE: &str = "the share cannot be opened with this user's keys";

/// A grant's permission, expiry and alias, checked before anything is unlocked or asked.
pub fn check_share_terms(permission: &str, expires_utc: Option<DateTime<Utc>>, alias: &str) -> Result<(), Error> {
    if alias.len() > 256 {
        return Err(Error::invalid("alias must be at most 256 bytes"));
    }
    harden_domain::share::check_terms(permission, expires_utc, Utc::now()).map_err(|e| Error::invalid(e.to_string()))
}

pub fn alias_context<'n>(org: Uuid, owner: Uuid, name: &'n [u8]) -> RecordContext<'n> {
    RecordContext { kind: ALIAS_KIND, org, owner, name }
}

/// A share's alias, opened with the recipient's keys.
pub fn open_alias(caller: &Caller<'_>, owner: Uuid, key: &str, blob_b64: &str) -> Result<String, Error> {
    let blob = decode("encryptedAliasB64", blob_b64)?;
    let alias =
        crypto::open_sealed(&caller.keys.keys, caller.me.id, &alias_context(caller.org, owner, key.as_bytes()), &blob)
            .map_err(|_| Error::conflict(CANNOT_OPEN_SHARE))?;
    Ok(String::from_utf8_lossy(&alias).into_owned())
}

/// Public keys as the Backend shows them (`publicKeyEccB64`, `publicKeyKyberB64`).
pub fn backend_public_keys(ecc: &str, kyber: &str) -> Result<crypto::PublicKeys, Error> {
    crypto::PublicKeys::from_bytes(&decode("publicKeyEccB64", ecc)?, &decode("publicKeyKyberB64", kyber)?)
        .map_err(|_| anyhow::anyhow!("the Backend returned malformed public keys").into())
}

/// Base64 from the Backend.
pub fn decode(field: &str, b64: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(b64).map_err(|_| anyhow::anyhow!("the Backend returned invalid base64 in {field}").into())
}

fn epoch_of(stored: &KvRecordResponse) -> u64 {
    stored.key_epoch.max(0) as u64
}

fn stored_wrap(stored: &KvRecordResponse) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Ok((
        decode("encryptedAesKeyEccB64", &stored.encrypted_aes_key_ecc_b64)?,
        decode("encryptedAesKeyKyberB64", &stored.encrypted_aes_key_kyber_b64)?,
    ))
}

/// The record's data key, unwrapped with the owner's keys.
pub fn unwrap_key(
    caller: &Caller<'_>,
    context: &RecordContext<'_>,
    stored: &KvRecordResponse,
) -> Result<DataKey, Error> {
    let (ecc, kyber) = stored_wrap(stored)?;
    crypto::unwrap_data_key(&caller.keys.keys, caller.me.id, context, &ecc, &kyber)
        .map_err(|_| Error::conflict("the stored value cannot be opened with this user's keys"))
}

/// A stored value opened where the Backend says it stands (its version and key epoch), and
/// whether it was bound there (format 2). A ciphertext of another version, epoch or record written
/// back as this one does not open: 409, never an old value passed off as current.
pub fn open_value(
    key: &DataKey,
    context: &RecordContext<'_>,
    version: u64,
    epoch: u64,
    ciphertext_b64: &str,
) -> Result<(Zeroizing<Vec<u8>>, bool), Error> {
    let at = crypto::VersionAt { version, epoch };
    crypto::decrypt_value_at(key, context, at, &decode("ciphertextB64", ciphertext_b64)?).map_err(|_| {
        Error::conflict(format!(
            "the stored value does not open as version {version} of this record: it was not written as that version (a rollback or a moved ciphertext), or not with this user's keys"
        ))
    })
}
