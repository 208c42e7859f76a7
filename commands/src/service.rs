//! The operations behind the Backend's routes. Each applies the tenant and role rules, looks up
//! what the command needs (authoritative state from the event store, fresh ids and keys), and
//! executes it with the request's metadata.

use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use harden_domain::org::{Org, OrgCommand};
use harden_domain::plan::ENTERPRISE_CONTACT;
use harden_domain::recovery::Recovery;
use harden_domain::secret::{KeyName, KeyUse, Secret, SecretCommand, SecretEnvelope, SecretEvent, VersionCheck};
use harden_domain::share::Share;
use harden_domain::user::{User, UserCommand};
use harden_domain::values::{KeyBlob, OrgName, PublicKeys, SealProof, SealedPrivateKeys, UserName};
use harden_domain::{OrgId, Plan, Role, UserId};

use crate::access::{self, ORG_NOT_FOUND};
use crate::bootstrap::MasterKey;
use crate::bus::{Commands, Committed, Meta, Wakeup};
use crate::credentials::{self, Principal};
use crate::error::Error;
use crate::ids::IdHasher;
use crate::keys;

const USER_NOT_FOUND: &str = "user not found";

pub struct Harden {
    pool: PgPool,
    ids: IdHasher,
    sealer: crate::storage::SecretSealer,
    recovery_challenge: zeroize::Zeroizing<[u8; 32]>,
    restore_ttl: chrono::Duration,
    pub orgs: Commands<Org>,
    pub users: Commands<User>,
    pub secrets: Commands<Secret>,
    pub shares: Commands<Share>,
    pub recoveries: Commands<Recovery>,
    pub files: Commands<harden_domain::file::File>,
    wakeup: Wakeup,
}

/// The outcome of a KV write.
/// The proofs that come with newly sealed keys: of the new seal's secret (its verifier is kept), and
/// of the current seal's secret when one is being replaced.
pub struct SealProofs {
    /// Absent when a client stores keys without one (the spec's four-field body).
    pub new_seal: Option<SealProof>,
    pub current_seal: Option<SealProof>,
}

pub struct WrittenSecret {
    pub version: u64,
    /// The write started a new life of the record (it did not exist, or was deleted).
    pub created: bool,
    pub committed: Committed,
}

pub struct NewUser<'a> {
    pub name: &'a str,
    pub is_admin: bool,
    pub public_key_ecc_b64: Option<&'a str>,
    pub public_key_kyber_b64: Option<&'a str>,
}

pub struct CreatedUser {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub name: UserName,
    pub role: Role,
    pub public_keys: Option<PublicKeys>,
    pub api_key: SecretString,
    pub committed: Committed,
}

pub struct CreatedOrg {
    pub org_id: OrgId,
    pub name: OrgName,
    pub plan: Plan,
    pub committed: Committed,
}

/// Parses a plan key as the API accepts it; `enterprise` is answered with where to ask instead.
pub fn parse_plan(key: &str) -> Result<Plan, Error> {
    if key == "enterprise" {
        return Err(Error::invalid(format!("the enterprise plan is not self-service; contact {ENTERPRISE_CONTACT}")));
    }
    Plan::parse(key)
        .ok_or_else(|| Error::invalid(format!("unknown plan '{key}'; choose one of free, starter, smb, business")))
}

impl Harden {
    pub fn new(pool: PgPool, master_key: &MasterKey) -> Self {
        let wakeup = Wakeup::spawn(pool.clone());
        Self {
            ids: IdHasher::from_master(master_key),
            sealer: crate::storage::SecretSealer::from_master(master_key),
            recovery_challenge: master_key.derive(b"harden/v1/recovery-challenge"),
            restore_ttl: chrono::Duration::days(7),
            orgs: Commands::new(pool.clone(), wakeup.clone()),
            users: Commands::new(pool.clone(), wakeup.clone()),
            secrets: Commands::new(pool.clone(), wakeup.clone()).loading_last_event_only(),
            shares: Commands::new(pool.clone(), wakeup.clone()),
            recoveries: Commands::new(pool.clone(), wakeup.clone()),
            files: Commands::new(pool.clone(), wakeup.clone()),
            wakeup,
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The wake-up every command bus of this process shares (it also counts committed events).
    pub fn wakeup(&self) -> Wakeup {
        self.wakeup.clone()
    }

    pub fn ids(&self) -> &IdHasher {
        &self.ids
    }

    /// How long a trustee's restore stays completable (`HARDEN_RECOVERY_RESTORE_TTL_SECS`).
    pub fn with_restore_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.restore_ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self
    }

    pub fn restore_ttl(&self) -> chrono::Duration {
        self.restore_ttl
    }

    pub(crate) fn recovery_challenge_key(&self) -> &[u8; 32] {
        &self.recovery_challenge
    }

    pub fn sealer(&self) -> &crate::storage::SecretSealer {
        &self.sealer
    }

    /// The principal behind a presented key, through this process's authentication cache.
    pub async fn authenticate(&self, presented: credentials::Presented<'_>) -> Result<Option<Principal>, Error> {
        Ok(self.wakeup.credentials().authenticate(&self.pool, presented).await?)
    }

    /// Keeps found principals for `lease` (`HARDEN_AUTH_CACHE_MS`; zero, the default here, turns
    /// the cache off). Revoking commands then wait `lease` before they answer.
    pub fn with_auth_cache(self, lease: std::time::Duration) -> Self {
        self.wakeup.credentials().set_lease(lease);
        self
    }

    pub async fn create_org(
        &self,
        caller: &Principal,
        name: &str,
        plan: Option<&str>,
        meta: Meta,
    ) -> Result<CreatedOrg, Error> {
        access::require_global_admin(caller)?;
        let name = OrgName::parse(name)?;
        let plan = plan.map(parse_plan).transpose()?.unwrap_or(Plan::Free);
        let org_id = OrgId::from_uuid(Uuid::new_v4());
        let command = OrgCommand::CreateOrg { org_id, name: name.clone(), plan, subscription: None };
        let committed = self.orgs.execute(&org_id.to_string(), command, &meta.with_org(org_id)).await?;
        Ok(CreatedOrg { org_id, name, plan, committed })
    }

    pub async fn change_plan(
        &self,
        caller: &Principal,
        org: OrgId,
        plan: &str,
        meta: Meta,
    ) -> Result<Committed, Error> {
        access::require_global_admin(caller)?;
        let plan = parse_plan(plan)?;
        self.orgs.execute(&org.to_string(), OrgCommand::ChangePlan { plan }, &meta.with_org(org)).await
    }

    /// The global admin may create only the first org admin of an org (whose id derives from the
    /// org's, so two racing requests cannot both succeed); org admins create admins and users in
    /// their own org.
    pub async fn create_user(
        &self,
        caller: &Principal,
        org: OrgId,
        new: NewUser<'_>,
        meta: Meta,
    ) -> Result<CreatedUser, Error> {
        access::require_admin_of(caller, org)?;
        let name = UserName::parse(new.name)?;
        let public_keys = PublicKeys::parse_optional(new.public_key_ecc_b64, new.public_key_kyber_b64)?;
        let role = if new.is_admin { Role::OrgAdmin } else { Role::Member };
        let user_id = if caller.is_global_admin() {
            if !self.orgs.load(&org.to_string()).await?.exists() {
                return Err(Error::not_found(ORG_NOT_FOUND));
            }
            if role != Role::OrgAdmin {
                return Err(Error::forbidden("the global admin can create only the first org admin of an org"));
            }
            UserId::first_admin_of(org)
        } else {
            UserId::from_uuid(Uuid::new_v4())
        };
        let key = keys::draw();
        let command = UserCommand::CreateUser {
            user_id,
            org_id: org,
            name: name.clone(),
            role,
            public_keys: public_keys.clone(),
            key: Some(key.issued),
        };
        let committed = match self.users.execute(&user_id.to_string(), command, &meta.with_org(org)).await {
            Err(Error::Conflict(_)) if caller.is_global_admin() => {
                return Err(Error::forbidden(
                    "this org already has its first admin; further users are created by its org admins",
                ))
            }
            other => other?,
        };
        Ok(CreatedUser { user_id, org_id: org, name, role, public_keys, api_key: key.plaintext, committed })
    }

    /// Loads a user the caller administers: in `org`, and `org` one the caller administers.
    async fn administered_user(&self, caller: &Principal, org: OrgId, user: UserId) -> Result<User, Error> {
        access::require_admin_of(caller, org)?;
        let state = self.users.load(&user.to_string()).await?;
        if state.org_id() != Some(org) {
            return Err(Error::not_found(USER_NOT_FOUND));
        }
        Ok(state)
    }

    /// Every key the user holds stops working before this returns; the new key is returned once.
    pub async fn rotate_key(
        &self,
        caller: &Principal,
        org: OrgId,
        user: UserId,
        meta: Meta,
    ) -> Result<(SecretString, Committed), Error> {
        self.administered_user(caller, org, user).await?;
        let key = keys::draw();
        let committed = self
            .users
            .execute(&user.to_string(), UserCommand::RotateApiKey { key: key.issued }, &meta.with_org(org))
            .await?;
        Ok((key.plaintext, committed))
    }

    /// Offboarding: the user and every key of theirs stop working at once; their events stay.
    pub async fn deactivate_user(
        &self,
        caller: &Principal,
        org: OrgId,
        user: UserId,
        meta: Meta,
    ) -> Result<Committed, Error> {
        self.administered_user(caller, org, user).await?;
        if caller.user_id == user {
            return Err(Error::invalid("you cannot deactivate yourself; ask another org admin"));
        }
        self.users.execute(&user.to_string(), UserCommand::Deactivate, &meta.with_org(org)).await
    }

    pub async fn store_keys(
        &self,
        caller: &Principal,
        public_keys: PublicKeys,
        sealed: SealedPrivateKeys,
        proofs: SealProofs,
        meta: Meta,
    ) -> Result<Committed, Error> {
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no key material"))?;
        let command = UserCommand::StoreKeys {
            public_keys,
            sealed,
            verifier: proofs.new_seal.as_ref().map(SealProof::verifier),
            current_proof: proofs.current_seal,
        };
        self.users.execute(&caller.user_id.to_string(), command, &meta.with_org(org)).await
    }

    pub async fn publish_bundle(&self, caller: &Principal, bundle: KeyBlob, meta: Meta) -> Result<Committed, Error> {
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no key material"))?;
        let command = UserCommand::PublishBundle { bundle };
        self.users.execute(&caller.user_id.to_string(), command, &meta.with_org(org)).await
    }

    pub async fn store_pins(&self, caller: &Principal, pins: KeyBlob, meta: Meta) -> Result<Committed, Error> {
        let org = access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no key material"))?;
        self.users.execute(&caller.user_id.to_string(), UserCommand::StorePins { pins }, &meta.with_org(org)).await
    }

    /// Creates or updates the caller's record `key_name`, a check-and-set as `check` says.
    /// Plan limits (records per org, key + value bytes) are enforced as the event is appended.
    pub async fn write_secret(
        &self,
        caller: &Principal,
        key_name: &KeyName,
        envelope: SecretEnvelope,
        check: VersionCheck,
        key: KeyUse,
        meta: Meta,
    ) -> Result<WrittenSecret, Error> {
        let org = kv_org(caller)?;
        let command = SecretCommand::WriteSecret {
            owner: caller.user_id,
            org_id: org,
            key_name: key_name.clone(),
            envelope,
            expected_version: check.current,
            version: check.becomes,
            key,
        };
        let id = self.ids.secret_id(caller.user_id, key_name);
        let (committed, events) = self.secrets.run(&id, command, &meta.with_org(org)).await?;
        match events.first() {
            Some(SecretEvent::SecretCreated { version, .. }) => {
                Ok(WrittenSecret { version: *version, created: true, committed })
            }
            Some(SecretEvent::SecretUpdated { version, .. }) => {
                Ok(WrittenSecret { version: *version, created: false, committed })
            }
            _ => Err(Error::Internal(anyhow::anyhow!("a KV write committed no write event"))),
        }
    }

    /// Soft-deletes the caller's live record `key_name`.
    pub async fn delete_secret(&self, caller: &Principal, key_name: &KeyName, meta: Meta) -> Result<Committed, Error> {
        let org = kv_org(caller)?;
        let id = self.ids.secret_id(caller.user_id, key_name);
        self.secrets.execute(&id, SecretCommand::DeleteSecret, &meta.with_org(org)).await
    }
}

/// KV records belong to org users; the global admin has none.
fn kv_org(caller: &Principal) -> Result<OrgId, Error> {
    access::own_org(caller).map_err(|_| Error::forbidden("the global admin has no KV records"))
}
