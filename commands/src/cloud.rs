//! The Cloud API's operations: onboarding, org profile and deletion, members and roles, invites,
//! API keys, and what the identity provider's webhooks change.
//!
//! Every rule about membership is the Org aggregate's: the caller's role is read from the org's
//! events, never from a read model, so a removed member or a deleted org loses access the moment the
//! event commits. Org API keys belong to the org's project user (a harden user, org admin, with the
//! id `UserId::first_admin_of(org)`), so they work on the Backend and the Proxy like any key.

use rand::RngCore;
use secrecy::SecretString;
use uuid::Uuid;

use harden_domain::cloud::{self as vocabulary, CloudProfile, IdentityId, MemberRole, INVITE_TTL_DAYS};
use harden_domain::org::{Member, Org, OrgCommand};
use harden_domain::user::{ApiKeyLabel, UserCommand};
use harden_domain::values::{Email, OrgName, UserName};
use harden_domain::{ApiKeyId, OrgId, Role, UserId};

use crate::bus::{Committed, Meta};
use crate::clock::Clock;
use crate::error::Error;
use crate::keys;
use crate::service::Harden;

const NOT_A_MEMBER: &str = "not a member of this organization";
const ORG_NAME_REQUIRED: &str = "org_name is required";
const VALID_EMAIL_REQUIRED: &str = "valid email is required";
/// The project user's display name in the Backend's directory.
const PROJECT_USER_NAME: &str = "Cloud API keys";
/// An org's API key names are at most this long.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// The signed-in identity-provider user behind a Cloud API request.
#[derive(Clone, Debug)]
pub struct CloudCaller {
    pub identity: IdentityId,
    /// The caller's verified email, from the token (or, where a route needs it, the identity
    /// cache); `None` if unknown or unverified.
    pub verified_email: Option<Email>,
    pub request_id: Option<String>,
}

impl CloudCaller {
    pub fn meta(&self, org: OrgId) -> Meta {
        Meta {
            org_id: Some(org),
            actor: None,
            request_id: self.request_id.clone(),
            identity: Some(self.identity.as_str().to_owned()),
        }
    }
}

pub struct Onboarded {
    pub org_id: OrgId,
    pub project_id: UserId,
    /// False when the caller already had an org and got it back.
    pub created: bool,
    pub committed: Committed,
}

pub struct NewInvite {
    pub invite_id: Uuid,
    pub token: String,
    pub email: Email,
    pub role: MemberRole,
    pub committed: Committed,
}

pub struct NewApiKey {
    pub key_id: ApiKeyId,
    pub name: String,
    /// The public identifier shown in listings; it never authenticates.
    pub label: String,
    /// The credential, shown once: sent as `X-Api-Key`.
    pub secret: SecretString,
    pub committed: Committed,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The org an identity's `n`th onboarding creates (n counts its orgs deleted since). Derived, so two
/// onboarding requests racing for one identity race on one aggregate and make one org.
pub fn onboarding_org_id(identity: &IdentityId, n: i64) -> OrgId {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6861_7264_656e_4000_8000_0000_0000_c10d);
    OrgId::from_uuid(Uuid::new_v5(&NAMESPACE, format!("{identity}/{n}").as_bytes()))
}

impl Harden {
    /// The caller's membership of a live org with at least `min` role. An unknown or deleted org is
    /// 404; a non-member 403 (the spec's answer); a member below `min` 403 naming the role.
    pub async fn cloud_member(
        &self,
        caller: &CloudCaller,
        org: OrgId,
        min: MemberRole,
    ) -> Result<(Org, Member), Error> {
        let state = self.orgs.load(&org.to_string()).await?;
        if !state.is_live() {
            return Err(Error::not_found(crate::access::ORG_NOT_FOUND));
        }
        let member = state.member(&caller.identity).ok_or_else(|| Error::forbidden(NOT_A_MEMBER))?;
        if member.role < min {
            return Err(Error::forbidden(format!("insufficient permissions: {} role required", min.as_str())));
        }
        Ok((state, member))
    }

    /// Creates the caller's org (free plan, the caller as owner, its project user), or returns the
    /// org the caller already owns. `n` is how many orgs the caller created and deleted before.
    pub async fn onboard(
        &self,
        caller: &CloudCaller,
        n: i64,
        org_name: &str,
        billing_email: Option<&str>,
    ) -> Result<Onboarded, Error> {
        let name = parse_org_name("org_name", ORG_NAME_REQUIRED, org_name)?;
        let billing_email = parse_billing_email(billing_email)?;
        let mut n = n;
        loop {
            let org_id = onboarding_org_id(&caller.identity, n);
            let meta = caller.meta(org_id);
            let profile = CloudProfile {
                slug: vocabulary::slug(name.as_str(), org_id.as_uuid()),
                billing_email: billing_email.clone(),
                created_by: caller.identity.clone(),
            };
            let owner_user_id = UserId::from_uuid(Uuid::new_v4());
            let command = OrgCommand::Onboard { org_id, name: name.clone(), profile, owner_user_id };
            let (created, committed) = match self.orgs.execute(&org_id.to_string(), command, &meta).await {
                Ok(committed) => (true, committed),
                Err(Error::Conflict(_)) => {
                    let existing = self.orgs.load(&org_id.to_string()).await?;
                    if !existing.is_live() {
                        // Deleted since the caller's count was read: the next one is theirs.
                        n += 1;
                        continue;
                    }
                    (false, Committed::default())
                }
                Err(e) => return Err(e),
            };
            // A retry finishes a project user that a failure left out.
            self.ensure_project_user(org_id, &meta).await?;
            return Ok(Onboarded { org_id, project_id: UserId::first_admin_of(org_id), created, committed });
        }
    }

    async fn ensure_project_user(&self, org: OrgId, meta: &Meta) -> Result<(), Error> {
        let user_id = UserId::first_admin_of(org);
        let command = UserCommand::CreateUser {
            user_id,
            org_id: org,
            name: UserName::parse(PROJECT_USER_NAME)?,
            role: Role::OrgAdmin,
            public_keys: None,
            key: None,
        };
        match self.users.execute(&user_id.to_string(), command, meta).await {
            Ok(_) | Err(Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn update_cloud_org(
        &self,
        caller: &CloudCaller,
        org: OrgId,
        name: &str,
        billing_email: Option<Option<&str>>,
    ) -> Result<Committed, Error> {
        // The body is checked before any state is: a bad field is 400 whoever asks.
        let name = parse_org_name("name", "name is required", name)?;
        let billing_email = billing_email.map(parse_billing_email).transpose()?;
        self.cloud_member(caller, org, MemberRole::Admin).await?;
        self.orgs.execute(&org.to_string(), OrgCommand::UpdateProfile { name, billing_email }, &caller.meta(org)).await
    }

    pub async fn delete_cloud_org(&self, caller: &CloudCaller, org: OrgId) -> Result<Committed, Error> {
        self.cloud_member(caller, org, MemberRole::Owner).await?;
        self.orgs.execute(&org.to_string(), OrgCommand::Delete, &caller.meta(org)).await
    }

    pub async fn change_member_role(
        &self,
        caller: &CloudCaller,
        org: OrgId,
        member: &str,
        role: &str,
    ) -> Result<(Member, Committed), Error> {
        let identity = IdentityId::parse(member)?;
        let role = MemberRole::parse_assignable(role)?;
        let (state, _) = self.cloud_member(caller, org, MemberRole::Admin).await?;
        let target = state.member(&identity).ok_or_else(|| Error::not_found("member not found"))?;
        let command = OrgCommand::ChangeMemberRole { identity, role };
        let committed = self.orgs.execute(&org.to_string(), command, &caller.meta(org)).await?;
        Ok((Member { role, ..target }, committed))
    }

    pub async fn remove_member(&self, caller: &CloudCaller, org: OrgId, member: &str) -> Result<Committed, Error> {
        let identity = IdentityId::parse(member)?;
        self.cloud_member(caller, org, MemberRole::Admin).await?;
        let command = OrgCommand::RemoveMember { identity, identity_deleted: false };
        self.orgs.execute(&org.to_string(), command, &caller.meta(org)).await
    }

    pub async fn create_invite(
        &self,
        caller: &CloudCaller,
        clock: &Clock,
        org: OrgId,
        email: &str,
        role: Option<&str>,
    ) -> Result<NewInvite, Error> {
        let email = Email::parse(email).map_err(|_| Error::invalid(VALID_EMAIL_REQUIRED))?;
        let role = role.map(MemberRole::parse_assignable).transpose()?.unwrap_or(MemberRole::Developer);
        self.cloud_member(caller, org, MemberRole::Admin).await?;
        let (invite_id, token) = (Uuid::new_v4(), random_hex(24));
        let command = OrgCommand::CreateInvite {
            invite_id,
            token: token.clone(),
            email: email.clone(),
            role,
            created_by: caller.identity.clone(),
            expires_at: clock.now() + chrono::Duration::days(INVITE_TTL_DAYS),
        };
        let committed = self.orgs.execute(&org.to_string(), command, &caller.meta(org)).await?;
        Ok(NewInvite { invite_id, token, email, role, committed })
    }

    pub async fn revoke_invite(&self, caller: &CloudCaller, org: OrgId, token: &str) -> Result<Committed, Error> {
        self.cloud_member(caller, org, MemberRole::Admin).await?;
        let command = OrgCommand::RevokeInvite { token: token.to_owned() };
        self.orgs.execute(&org.to_string(), command, &caller.meta(org)).await
    }

    /// `org` is the org the token belongs to (looked up by the caller), if any.
    pub async fn accept_invite(
        &self,
        caller: &CloudCaller,
        clock: &Clock,
        org: Option<OrgId>,
        token: &str,
    ) -> Result<(OrgId, MemberRole, Committed), Error> {
        let org = org.ok_or_else(|| Error::not_found("invite not found or already revoked"))?;
        let command = OrgCommand::AcceptInvite {
            token: token.to_owned(),
            identity: caller.identity.clone(),
            email: caller.verified_email.clone(),
            user_id: UserId::from_uuid(Uuid::new_v4()),
            now: clock.now(),
        };
        let (committed, events) = self.orgs.run(&org.to_string(), command, &caller.meta(org)).await?;
        let role = events
            .into_iter()
            .find_map(|e| match e {
                harden_domain::org::OrgEvent::MemberJoined { role, .. } => Some(role),
                _ => None,
            })
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("an accepted invite recorded no membership")))?;
        Ok((org, role, committed))
    }

    pub async fn create_api_key(
        &self,
        caller: &CloudCaller,
        org: OrgId,
        name: Option<&str>,
    ) -> Result<NewApiKey, Error> {
        let name = match name.map(str::trim) {
            None | Some("") => format!("Key {}", chrono::Utc::now().format("%Y-%m-%d")),
            Some(n) if n.chars().count() > MAX_KEY_NAME_CHARS || n.chars().any(char::is_control) => {
                return Err(Error::invalid(format!(
                    "name must be at most {MAX_KEY_NAME_CHARS} characters, without control characters"
                )))
            }
            Some(n) => n.to_owned(),
        };
        self.cloud_member(caller, org, MemberRole::Admin).await?;
        let meta = caller.meta(org);
        self.ensure_project_user(org, &meta).await?;
        let key = keys::draw();
        let label = keys::draw_label();
        let key_id = key.issued.key_id;
        let command =
            UserCommand::IssueApiKey { key: key.issued, label: ApiKeyLabel { name: name.clone(), key: label.clone() } };
        let committed = self.users.execute(&UserId::first_admin_of(org).to_string(), command, &meta).await?;
        Ok(NewApiKey { key_id, name, label, secret: key.plaintext, committed })
    }

    pub async fn revoke_api_key(&self, caller: &CloudCaller, org: OrgId, key_id: ApiKeyId) -> Result<Committed, Error> {
        self.cloud_member(caller, org, MemberRole::Admin).await?;
        let command = UserCommand::RevokeApiKey { key_id };
        match self.users.execute(&UserId::first_admin_of(org).to_string(), command, &caller.meta(org)).await {
            Err(Error::NotFound(_)) => Err(Error::not_found("api key not found")),
            other => other,
        }
    }

    /// The identity provider deleted `identity`: each of its memberships in `orgs` ends (the
    /// owner's too). Idempotent, so a retried webhook delivery finishes what a failed one began.
    /// Returns the position of the last change, for read-your-writes.
    pub async fn end_memberships(
        &self,
        identity: &IdentityId,
        orgs: &[OrgId],
        request_id: Option<String>,
    ) -> Result<Option<crate::Position>, Error> {
        let mut last = None;
        for org in orgs {
            let meta = Meta {
                org_id: Some(*org),
                request_id: request_id.clone(),
                identity: Some(identity.as_str().to_owned()),
                ..Meta::default()
            };
            let command = OrgCommand::RemoveMember { identity: identity.clone(), identity_deleted: true };
            let committed = self.orgs.execute(&org.to_string(), command, &meta).await?;
            last = last.max(committed.position);
        }
        Ok(last)
    }
}

/// An org name from the field `field`: missing or blank is `required`, the spec's message.
fn parse_org_name(field: &str, required: &str, raw: &str) -> Result<OrgName, Error> {
    if raw.trim().is_empty() {
        return Err(Error::invalid(required));
    }
    OrgName::parse(raw).map_err(|e| Error::invalid(format!("{field}: {}", e.0)))
}

fn parse_billing_email(raw: Option<&str>) -> Result<Option<Email>, Error> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => {
            Email::parse(raw).map(Some).map_err(|_| Error::invalid("billing_email is not a valid email address"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onboarding_ids_are_stable_per_identity_and_generation() {
        let alice = IdentityId::parse("user_alice").unwrap();
        let bob = IdentityId::parse("user_bob").unwrap();
        assert_eq!(onboarding_org_id(&alice, 0), onboarding_org_id(&alice, 0));
        assert_ne!(onboarding_org_id(&alice, 0), onboarding_org_id(&alice, 1));
        assert_ne!(onboarding_org_id(&alice, 0), onboarding_org_id(&bob, 0));
    }
}
