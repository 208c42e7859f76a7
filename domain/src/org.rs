//! The Org aggregate: a tenant, its name, its plan and (for a self-service paid plan) its Stripe
//! subscription. An org onboarded through the Cloud API also holds its profile, its members and
//! their roles, and its invites (see [`crate::cloud`]): every membership rule is decided here, under
//! the aggregate's one optimistic lock.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cloud::{CloudProfile, IdentityId, Invite, InviteState, MemberRole};
use crate::ids::{OrgId, UserId};
use crate::plan::{Plan, PlanLimits, Subscription};
use crate::storage::StorageSettings;
use crate::values::{Email, OrgName};

#[derive(Debug, Clone, PartialEq)]
pub enum OrgCommand {
    CreateOrg {
        org_id: OrgId,
        name: OrgName,
        plan: Plan,
        subscription: Option<Subscription>,
    },
    ChangePlan {
        plan: Plan,
    },
    /// Stripe says the subscription ended (deleted, or unpaid): the org falls back to the free
    /// plan's limits. A subscription that is not the org's current one changes nothing.
    EndSubscription {
        subscription_id: String,
        reason: String,
    },
    /// Stores the org's S3 storage settings (checked for reachability by the command side).
    ConfigureStorage {
        settings: StorageSettings,
    },
    /// Cloud onboarding: a free org with its profile, and its creator as the owner.
    Onboard {
        org_id: OrgId,
        name: OrgName,
        profile: CloudProfile,
        owner_user_id: UserId,
    },
    /// PATCH semantics: `billing_email` `None` keeps the current one, `Some(None)` clears it.
    UpdateProfile {
        name: OrgName,
        billing_email: Option<Option<Email>>,
    },
    /// Soft delete: members and API keys stop working; events and audit stay.
    Delete,
    CreateInvite {
        invite_id: uuid::Uuid,
        token: String,
        email: Email,
        role: MemberRole,
        created_by: IdentityId,
        expires_at: DateTime<Utc>,
    },
    RevokeInvite {
        token: String,
    },
    /// `email` is the caller's verified email, if known; it must be the invite's.
    AcceptInvite {
        token: String,
        identity: IdentityId,
        email: Option<Email>,
        user_id: UserId,
        now: DateTime<Utc>,
    },
    ChangeMemberRole {
        identity: IdentityId,
        role: MemberRole,
    },
    /// An admin removes a member (never the owner), or the identity provider deleted the identity
    /// (`identity_deleted`), which ends every membership it had, the owner's included.
    RemoveMember {
        identity: IdentityId,
        identity_deleted: bool,
    },
}

/// Both events carry the limits of the plan they put in force: the append-time limit check reads
/// them (migration 0005), and the history shows what applied when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrgEvent {
    OrgCreated {
        org_id: OrgId,
        name: OrgName,
        plan: Plan,
        limits: PlanLimits,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subscription: Option<Subscription>,
    },
    OrgPlanChanged {
        org_id: OrgId,
        from: Plan,
        to: Plan,
        limits: PlanLimits,
    },
    OrgSubscriptionEnded {
        org_id: OrgId,
        subscription_id: String,
        reason: String,
    },
    OrgStorageConfigured {
        org_id: OrgId,
        settings: StorageSettings,
    },
    /// Written with `OrgCreated` by Cloud onboarding (with the name again, so the Cloud listing
    /// is built from this event alone).
    OrgOnboarded {
        org_id: OrgId,
        name: OrgName,
        profile: CloudProfile,
    },
    OrgProfileUpdated {
        org_id: OrgId,
        name: OrgName,
        billing_email: Option<Email>,
    },
    OrgDeleted {
        org_id: OrgId,
    },
    /// The token travels with the invite: the spec lists it to every member who may list invites,
    /// which is why accepting also requires the invitee's verified email.
    InviteCreated {
        org_id: OrgId,
        invite_id: uuid::Uuid,
        token: String,
        email: Email,
        role: MemberRole,
        created_by: IdentityId,
        expires_at: DateTime<Utc>,
    },
    InviteRevoked {
        org_id: OrgId,
        invite_id: uuid::Uuid,
    },
    /// A member joined: the owner at onboarding, anyone else by accepting `invite_id`. `user_id` is
    /// the harden user the member is in this org.
    MemberJoined {
        org_id: OrgId,
        identity: IdentityId,
        user_id: UserId,
        role: MemberRole,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite_id: Option<uuid::Uuid>,
    },
    MemberRoleChanged {
        org_id: OrgId,
        identity: IdentityId,
        user_id: UserId,
        from: MemberRole,
        to: MemberRole,
    },
    MemberRemoved {
        org_id: OrgId,
        identity: IdentityId,
        user_id: UserId,
        identity_deleted: bool,
    },
}

impl DomainEvent for OrgEvent {
    fn event_type(&self) -> String {
        match self {
            OrgEvent::OrgCreated { .. } => "OrgCreated",
            OrgEvent::OrgPlanChanged { .. } => "OrgPlanChanged",
            OrgEvent::OrgSubscriptionEnded { .. } => "OrgSubscriptionEnded",
            OrgEvent::OrgStorageConfigured { .. } => "OrgStorageConfigured",
            OrgEvent::OrgOnboarded { .. } => "OrgOnboarded",
            OrgEvent::OrgProfileUpdated { .. } => "OrgProfileUpdated",
            OrgEvent::OrgDeleted { .. } => "OrgDeleted",
            OrgEvent::InviteCreated { .. } => "InviteCreated",
            OrgEvent::InviteRevoked { .. } => "InviteRevoked",
            OrgEvent::MemberJoined { .. } => "MemberJoined",
            OrgEvent::MemberRoleChanged { .. } => "MemberRoleChanged",
            OrgEvent::MemberRemoved { .. } => "MemberRemoved",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrgError {
    #[error("organization already exists")]
    AlreadyExists,
    #[error("organization not found")]
    NotFound,
    #[error("invite not found or already revoked")]
    InviteNotFound,
    #[error("invite has already been accepted")]
    InviteAccepted,
    #[error("invite has expired")]
    InviteExpired,
    #[error("this invite was sent to another email address; sign in with the invited, verified email")]
    InviteEmailMismatch,
    #[error("you are already a member of this organization")]
    AlreadyMember,
    #[error("member not found")]
    MemberNotFound,
    #[error("cannot change the owner's role")]
    OwnerRoleFixed,
    #[error("cannot remove the last owner — transfer ownership first")]
    LastOwner,
    #[error("an invite with this token already exists")]
    InviteExists,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Org {
    id: Option<OrgId>,
    plan: Option<Plan>,
    /// The live subscription; gone once it ended.
    subscription: Option<Subscription>,
    storage: Option<StorageSettings>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    members: BTreeMap<IdentityId, Member>,
    #[serde(default)]
    invites: BTreeMap<String, Invite>,
    #[serde(default)]
    billing_email: Option<Email>,
}

/// A member as the Org aggregate keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: UserId,
    pub role: MemberRole,
}

impl Org {
    /// Whether the org was ever created (a deleted org still exists: its id stays taken).
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
    /// Created and not deleted.
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }
    /// The caller's membership, in a live org.
    pub fn member(&self, identity: &IdentityId) -> Option<Member> {
        self.members.get(identity).copied().filter(|_| self.is_live())
    }
    pub fn members(&self) -> impl Iterator<Item = (&IdentityId, &Member)> {
        self.members.iter()
    }

    fn live_id(&self) -> Result<OrgId, OrgError> {
        self.id.filter(|_| !self.deleted).ok_or(OrgError::NotFound)
    }

    fn pending_invite(&self, token: &str) -> Result<&Invite, OrgError> {
        match self.invites.get(token) {
            None => Err(OrgError::InviteNotFound),
            Some(invite) => match invite.state {
                InviteState::Revoked => Err(OrgError::InviteNotFound),
                InviteState::Accepted => Err(OrgError::InviteAccepted),
                InviteState::Pending => Ok(invite),
            },
        }
    }
    pub fn plan(&self) -> Option<Plan> {
        self.plan
    }
    pub fn storage(&self) -> Option<&StorageSettings> {
        self.storage.as_ref()
    }
}

impl Aggregate for Org {
    const TYPE: &'static str = "Org";
    type Command = OrgCommand;
    type Event = OrgEvent;
    type Error = OrgError;
    type Services = ();

    async fn handle(&mut self, command: OrgCommand, _services: &(), sink: &EventSink<Self>) -> Result<(), OrgError> {
        match command {
            OrgCommand::CreateOrg { org_id, name, plan, subscription } => {
                if self.exists() {
                    return Err(OrgError::AlreadyExists);
                }
                sink.write(OrgEvent::OrgCreated { org_id, name, plan, limits: plan.limits(), subscription }, self)
                    .await;
            }
            OrgCommand::ConfigureStorage { settings } => {
                let org_id = self.live_id()?;
                if self.storage.as_ref() != Some(&settings) {
                    sink.write(OrgEvent::OrgStorageConfigured { org_id, settings }, self).await;
                }
            }
            OrgCommand::EndSubscription { subscription_id, reason } => {
                let (Some(org_id), Some(from)) = (self.id, self.plan) else {
                    return Err(OrgError::NotFound);
                };
                // A duplicate delivery finds the subscription already ended: nothing twice.
                if self.subscription.as_ref().is_some_and(|s| s.subscription_id == subscription_id) {
                    sink.write(OrgEvent::OrgSubscriptionEnded { org_id, subscription_id, reason }, self).await;
                    if from != Plan::Free {
                        let to = Plan::Free;
                        sink.write(OrgEvent::OrgPlanChanged { org_id, from, to, limits: to.limits() }, self).await;
                    }
                }
            }
            OrgCommand::ChangePlan { plan } => {
                let (org_id, Some(from)) = (self.live_id()?, self.plan) else {
                    return Err(OrgError::NotFound);
                };
                // Asking for the plan the org already has changes nothing: a retried request or a
                // duplicate billing webhook must not record a change twice.
                if from != plan {
                    sink.write(OrgEvent::OrgPlanChanged { org_id, from, to: plan, limits: plan.limits() }, self).await;
                }
            }
            OrgCommand::Onboard { org_id, name, profile, owner_user_id } => {
                if self.exists() {
                    return Err(OrgError::AlreadyExists);
                }
                let plan = Plan::Free;
                let identity = profile.created_by.clone();
                let created = OrgEvent::OrgCreated {
                    org_id,
                    name: name.clone(),
                    plan,
                    limits: plan.limits(),
                    subscription: None,
                };
                sink.write(created, self).await;
                sink.write(OrgEvent::OrgOnboarded { org_id, name, profile }, self).await;
                let role = MemberRole::Owner;
                let joined = OrgEvent::MemberJoined { org_id, identity, user_id: owner_user_id, role, invite_id: None };
                sink.write(joined, self).await;
            }
            OrgCommand::UpdateProfile { name, billing_email } => {
                let org_id = self.live_id()?;
                let billing_email = billing_email.unwrap_or_else(|| self.billing_email.clone());
                sink.write(OrgEvent::OrgProfileUpdated { org_id, name, billing_email }, self).await;
            }
            OrgCommand::Delete => {
                let org_id = self.id.ok_or(OrgError::NotFound)?;
                // Deleting twice is deleting once.
                if !self.deleted {
                    sink.write(OrgEvent::OrgDeleted { org_id }, self).await;
                }
            }
            OrgCommand::CreateInvite { invite_id, token, email, role, created_by, expires_at } => {
                let org_id = self.live_id()?;
                if role == MemberRole::Owner {
                    return Err(OrgError::OwnerRoleFixed);
                }
                if self.invites.contains_key(&token) {
                    return Err(OrgError::InviteExists);
                }
                let created = OrgEvent::InviteCreated { org_id, invite_id, token, email, role, created_by, expires_at };
                sink.write(created, self).await;
            }
            OrgCommand::RevokeInvite { token } => {
                let org_id = self.live_id()?;
                let invite_id = self.pending_invite(&token)?.invite_id;
                sink.write(OrgEvent::InviteRevoked { org_id, invite_id }, self).await;
            }
            OrgCommand::AcceptInvite { token, identity, email, user_id, now } => {
                let org_id = self.id.filter(|_| !self.deleted).ok_or(OrgError::InviteNotFound)?;
                let invite = self.pending_invite(&token)?;
                if now >= invite.expires_at {
                    return Err(OrgError::InviteExpired);
                }
                if email.as_ref() != Some(&invite.email) {
                    return Err(OrgError::InviteEmailMismatch);
                }
                if self.members.contains_key(&identity) {
                    return Err(OrgError::AlreadyMember);
                }
                let (role, invite_id) = (invite.role, Some(invite.invite_id));
                sink.write(OrgEvent::MemberJoined { org_id, identity, user_id, role, invite_id }, self).await;
            }
            OrgCommand::ChangeMemberRole { identity, role } => {
                let org_id = self.live_id()?;
                let member = self.members.get(&identity).copied().ok_or(OrgError::MemberNotFound)?;
                if member.role == MemberRole::Owner || role == MemberRole::Owner {
                    return Err(OrgError::OwnerRoleFixed);
                }
                if member.role != role {
                    let (user_id, from) = (member.user_id, member.role);
                    sink.write(OrgEvent::MemberRoleChanged { org_id, identity, user_id, from, to: role }, self).await;
                }
            }
            OrgCommand::RemoveMember { identity, identity_deleted } => {
                let org_id = self.id.ok_or(OrgError::NotFound)?;
                let Some(member) = self.members.get(&identity).copied() else {
                    // A deleted identity's memberships end once, however often the provider says so.
                    return if identity_deleted { Ok(()) } else { Err(OrgError::MemberNotFound) };
                };
                if member.role == MemberRole::Owner && !identity_deleted {
                    return Err(OrgError::LastOwner);
                }
                let user_id = member.user_id;
                sink.write(OrgEvent::MemberRemoved { org_id, identity, user_id, identity_deleted }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: OrgEvent) {
        match event {
            OrgEvent::OrgCreated { org_id, plan, subscription, .. } => {
                self.id = Some(org_id);
                self.plan = Some(plan);
                self.subscription = subscription;
            }
            OrgEvent::OrgPlanChanged { to, .. } => self.plan = Some(to),
            OrgEvent::OrgSubscriptionEnded { .. } => self.subscription = None,
            OrgEvent::OrgStorageConfigured { settings, .. } => self.storage = Some(settings),
            OrgEvent::OrgOnboarded { profile, .. } => self.billing_email = profile.billing_email,
            OrgEvent::OrgProfileUpdated { billing_email, .. } => self.billing_email = billing_email,
            OrgEvent::OrgDeleted { .. } => self.deleted = true,
            OrgEvent::InviteCreated { invite_id, token, email, role, expires_at, .. } => {
                let state = InviteState::Pending;
                self.invites.insert(token, Invite { invite_id, email, role, expires_at, state });
            }
            OrgEvent::InviteRevoked { invite_id, .. } => self.set_invite_state(invite_id, InviteState::Revoked),
            OrgEvent::MemberJoined { identity, user_id, role, invite_id, .. } => {
                self.members.insert(identity, Member { user_id, role });
                if let Some(invite_id) = invite_id {
                    self.set_invite_state(invite_id, InviteState::Accepted);
                }
            }
            OrgEvent::MemberRoleChanged { identity, to, .. } => {
                if let Some(member) = self.members.get_mut(&identity) {
                    member.role = to;
                }
            }
            OrgEvent::MemberRemoved { identity, .. } => {
                self.members.remove(&identity);
            }
        }
    }
}

impl Org {
    fn set_invite_state(&mut self, invite_id: uuid::Uuid, state: InviteState) {
        if let Some(invite) = self.invites.values_mut().find(|i| i.invite_id == invite_id) {
            invite.state = state;
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;

    fn org_id() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(42))
    }

    fn created() -> OrgEvent {
        OrgEvent::OrgCreated {
            org_id: org_id(),
            name: OrgName::parse("acme").unwrap(),
            plan: Plan::Free,
            limits: Plan::Free.limits(),
            subscription: None,
        }
    }

    fn subscription() -> Subscription {
        Subscription { customer_id: "cus_1".to_owned(), subscription_id: "sub_1".to_owned() }
    }

    fn created_paid() -> OrgEvent {
        OrgEvent::OrgCreated {
            org_id: org_id(),
            name: OrgName::parse("acme").unwrap(),
            plan: Plan::Smb,
            limits: Plan::Smb.limits(),
            subscription: Some(subscription()),
        }
    }

    fn end(subscription_id: &str) -> OrgCommand {
        OrgCommand::EndSubscription { subscription_id: subscription_id.to_owned(), reason: "deleted".to_owned() }
    }

    #[test]
    fn an_ended_subscription_moves_the_org_to_the_free_plan_once() {
        let ended = OrgEvent::OrgSubscriptionEnded {
            org_id: org_id(),
            subscription_id: "sub_1".to_owned(),
            reason: "deleted".to_owned(),
        };
        let downgraded =
            OrgEvent::OrgPlanChanged { org_id: org_id(), from: Plan::Smb, to: Plan::Free, limits: Plan::Free.limits() };
        TestFramework::<Org>::with(())
            .given(vec![created_paid()])
            .when(end("sub_1"))
            .then_expect_events(vec![ended.clone(), downgraded.clone()]);
        TestFramework::<Org>::with(())
            .given(vec![created_paid(), ended, downgraded])
            .when(end("sub_1"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_subscription_ending_changes_nothing() {
        TestFramework::<Org>::with(()).given(vec![created_paid()]).when(end("sub_other")).then_expect_events(vec![]);
        TestFramework::<Org>::with(()).given(vec![created()]).when(end("sub_1")).then_expect_events(vec![]);
        TestFramework::<Org>::with(())
            .given_no_previous_events()
            .when(end("sub_1"))
            .then_expect_error(OrgError::NotFound);
    }

    #[test]
    fn create_org_records_name_and_plan() {
        TestFramework::<Org>::with(())
            .given_no_previous_events()
            .when(OrgCommand::CreateOrg {
                org_id: org_id(),
                name: OrgName::parse("acme").unwrap(),
                plan: Plan::Free,
                subscription: None,
            })
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn create_org_refuses_an_existing_org() {
        TestFramework::<Org>::with(())
            .given(vec![created()])
            .when(OrgCommand::CreateOrg {
                org_id: org_id(),
                name: OrgName::parse("other").unwrap(),
                plan: Plan::Smb,
                subscription: None,
            })
            .then_expect_error(OrgError::AlreadyExists);
    }

    #[test]
    fn change_plan_records_from_and_to() {
        TestFramework::<Org>::with(())
            .given(vec![created()])
            .when(OrgCommand::ChangePlan { plan: Plan::Business })
            .then_expect_events(vec![OrgEvent::OrgPlanChanged {
                org_id: org_id(),
                from: Plan::Free,
                to: Plan::Business,
                limits: Plan::Business.limits(),
            }]);
    }

    #[test]
    fn change_plan_to_the_current_plan_records_nothing() {
        TestFramework::<Org>::with(())
            .given(vec![created()])
            .when(OrgCommand::ChangePlan { plan: Plan::Free })
            .then_expect_events(vec![]);
    }

    #[test]
    fn change_plan_refuses_a_missing_org() {
        TestFramework::<Org>::with(())
            .given_no_previous_events()
            .when(OrgCommand::ChangePlan { plan: Plan::Starter })
            .then_expect_error(OrgError::NotFound);
    }

    mod cloud {
        use chrono::{Duration, TimeZone};

        use super::*;
        use crate::cloud::CloudProfile;

        fn identity(s: &str) -> IdentityId {
            IdentityId::parse(s).unwrap()
        }
        fn user(n: u128) -> UserId {
            UserId::from_uuid(Uuid::from_u128(n))
        }
        fn email(s: &str) -> Email {
            Email::parse(s).unwrap()
        }
        fn t0() -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 3, 11, 12, 0, 0).unwrap()
        }
        fn invite_id() -> Uuid {
            Uuid::from_u128(77)
        }

        fn onboarded() -> Vec<OrgEvent> {
            let profile =
                CloudProfile { slug: "acme-1".into(), billing_email: None, created_by: identity("user_owner") };
            let mut events = vec![created()];
            events.push(OrgEvent::OrgOnboarded { org_id: org_id(), name: OrgName::parse("acme").unwrap(), profile });
            events.push(OrgEvent::MemberJoined {
                org_id: org_id(),
                identity: identity("user_owner"),
                user_id: user(1),
                role: MemberRole::Owner,
                invite_id: None,
            });
            events
        }

        #[test]
        fn a_profile_update_without_a_billing_email_keeps_it_and_an_explicit_none_clears_it() {
            let name = || OrgName::parse("acme renamed").unwrap();
            let mut given = onboarded();
            given.push(OrgEvent::OrgProfileUpdated {
                org_id: org_id(),
                name: OrgName::parse("acme").unwrap(),
                billing_email: Some(email("billing@acme.test")),
            });
            TestFramework::<Org>::with(())
                .given(given.clone())
                .when(OrgCommand::UpdateProfile { name: name(), billing_email: None })
                .then_expect_events(vec![OrgEvent::OrgProfileUpdated {
                    org_id: org_id(),
                    name: name(),
                    billing_email: Some(email("billing@acme.test")),
                }]);
            TestFramework::<Org>::with(())
                .given(given)
                .when(OrgCommand::UpdateProfile { name: name(), billing_email: Some(None) })
                .then_expect_events(vec![OrgEvent::OrgProfileUpdated {
                    org_id: org_id(),
                    name: name(),
                    billing_email: None,
                }]);
        }

        fn invited(role: MemberRole) -> OrgEvent {
            OrgEvent::InviteCreated {
                org_id: org_id(),
                invite_id: invite_id(),
                token: "tok".into(),
                email: email("bob@acme.test"),
                role,
                created_by: identity("user_owner"),
                expires_at: t0() + Duration::days(7),
            }
        }

        fn accept(who: &str, mail: Option<&str>, now: DateTime<Utc>) -> OrgCommand {
            OrgCommand::AcceptInvite {
                token: "tok".into(),
                identity: identity(who),
                email: mail.map(email),
                user_id: user(2),
                now,
            }
        }

        fn joined_bob() -> OrgEvent {
            OrgEvent::MemberJoined {
                org_id: org_id(),
                identity: identity("user_bob"),
                user_id: user(2),
                role: MemberRole::Developer,
                invite_id: Some(invite_id()),
            }
        }

        fn given(extra: Vec<OrgEvent>) -> cqrs_es::test::AggregateTestExecutor<Org> {
            let mut events = onboarded();
            events.extend(extra);
            TestFramework::<Org>::with(()).given(events)
        }

        #[test]
        fn an_invite_is_accepted_once_by_its_email_before_it_expires() {
            let pending = vec![invited(MemberRole::Developer)];
            given(pending.clone())
                .when(accept("user_bob", Some("bob@acme.test"), t0()))
                .then_expect_events(vec![joined_bob()]);
            given(pending.clone())
                .when(accept("user_bob", Some("bob@acme.test"), t0() + Duration::days(7)))
                .then_expect_error(OrgError::InviteExpired);
            given(pending.clone())
                .when(accept("user_eve", Some("eve@acme.test"), t0()))
                .then_expect_error(OrgError::InviteEmailMismatch);
            given(pending.clone())
                .when(accept("user_eve", None, t0()))
                .then_expect_error(OrgError::InviteEmailMismatch);
            given(vec![invited(MemberRole::Developer), joined_bob()])
                .when(accept("user_bob", Some("bob@acme.test"), t0()))
                .then_expect_error(OrgError::InviteAccepted);
            given(vec![])
                .when(accept("user_bob", Some("bob@acme.test"), t0()))
                .then_expect_error(OrgError::InviteNotFound);
            let revoked = OrgEvent::InviteRevoked { org_id: org_id(), invite_id: invite_id() };
            given(vec![invited(MemberRole::Developer), revoked])
                .when(accept("user_bob", Some("bob@acme.test"), t0()))
                .then_expect_error(OrgError::InviteNotFound);
        }

        #[test]
        fn a_member_cannot_join_twice() {
            let mut invite = invited(MemberRole::Viewer);
            if let OrgEvent::InviteCreated { email: e, .. } = &mut invite {
                *e = email("owner@acme.test");
            }
            given(vec![invite])
                .when(accept("user_owner", Some("owner@acme.test"), t0()))
                .then_expect_error(OrgError::AlreadyMember);
        }

        #[test]
        fn the_owner_keeps_its_role_and_its_membership() {
            given(vec![])
                .when(OrgCommand::ChangeMemberRole { identity: identity("user_owner"), role: MemberRole::Admin })
                .then_expect_error(OrgError::OwnerRoleFixed);
            given(vec![])
                .when(OrgCommand::RemoveMember { identity: identity("user_owner"), identity_deleted: false })
                .then_expect_error(OrgError::LastOwner);
            given(vec![invited(MemberRole::Developer), joined_bob()])
                .when(OrgCommand::ChangeMemberRole { identity: identity("user_bob"), role: MemberRole::Owner })
                .then_expect_error(OrgError::OwnerRoleFixed);
            // A deleted identity ends even the owner's membership, once.
            let removed = OrgEvent::MemberRemoved {
                org_id: org_id(),
                identity: identity("user_owner"),
                user_id: user(1),
                identity_deleted: true,
            };
            given(vec![])
                .when(OrgCommand::RemoveMember { identity: identity("user_owner"), identity_deleted: true })
                .then_expect_events(vec![removed.clone()]);
            given(vec![removed])
                .when(OrgCommand::RemoveMember { identity: identity("user_owner"), identity_deleted: true })
                .then_expect_events(vec![]);
        }

        #[test]
        fn role_changes_are_recorded_once_and_a_deleted_org_refuses_everything() {
            let changed = OrgEvent::MemberRoleChanged {
                org_id: org_id(),
                identity: identity("user_bob"),
                user_id: user(2),
                from: MemberRole::Developer,
                to: MemberRole::Admin,
            };
            given(vec![invited(MemberRole::Developer), joined_bob()])
                .when(OrgCommand::ChangeMemberRole { identity: identity("user_bob"), role: MemberRole::Admin })
                .then_expect_events(vec![changed.clone()]);
            given(vec![invited(MemberRole::Developer), joined_bob(), changed])
                .when(OrgCommand::ChangeMemberRole { identity: identity("user_bob"), role: MemberRole::Admin })
                .then_expect_events(vec![]);
            let deleted = OrgEvent::OrgDeleted { org_id: org_id() };
            given(vec![deleted.clone()]).when(OrgCommand::Delete).then_expect_events(vec![]);
            given(vec![deleted.clone()])
                .when(OrgCommand::ChangePlan { plan: Plan::Starter })
                .then_expect_error(OrgError::NotFound);
            given(vec![invited(MemberRole::Developer), deleted])
                .when(accept("user_bob", Some("bob@acme.test"), t0()))
                .then_expect_error(OrgError::InviteNotFound);
        }
    }
}
