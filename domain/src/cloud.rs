//! The Cloud API's vocabulary: identity-provider users, member roles, org profiles and invites. An
//! onboarded org is an ordinary [`crate::org::Org`] that also holds these; its members and invites
//! live on it, so one aggregate decides every membership rule (one owner, single-use invites, no
//! second membership) under one optimistic lock.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::values::{Email, InvalidValue};

/// An identity provider's user id (Clerk's `user_…`): the subject of its session tokens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentityId(String);

impl IdentityId {
    pub const MAX_CHARS: usize = 255;

    /// `user_` followed by letters and digits, as the spec's path parameter rule says.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let rest = raw.strip_prefix("user_").unwrap_or_default();
        if rest.is_empty() || raw.len() > Self::MAX_CHARS || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidValue("invalid clerk_user_id format".to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member's role in an onboarded org. Ordered: each role may do what the roles below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Viewer,
    Developer,
    Admin,
    Owner,
}

pub const ASSIGNABLE_ROLES: &str = "role must be one of: admin, developer, viewer";

impl MemberRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberRole::Viewer => "viewer",
            MemberRole::Developer => "developer",
            MemberRole::Admin => "admin",
            MemberRole::Owner => "owner",
        }
    }

    /// A role that an invite or a role change may give: never `owner` (only the org's creator holds it).
    pub fn parse_assignable(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "admin" => Ok(MemberRole::Admin),
            "developer" => Ok(MemberRole::Developer),
            "viewer" => Ok(MemberRole::Viewer),
            _ => Err(InvalidValue(ASSIGNABLE_ROLES.to_owned())),
        }
    }

    /// Owners and admins administer the org on the Backend as well.
    pub fn is_org_admin(&self) -> bool {
        *self >= MemberRole::Admin
    }
}

/// What onboarding adds to an org: its slug, billing contact and creator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudProfile {
    pub slug: String,
    pub billing_email: Option<Email>,
    pub created_by: IdentityId,
}

/// `acme-corp-4f2a1b`: the name in lower-case ASCII words joined by dashes, then six characters of
/// the org id so that two orgs of the same name never share a slug.
pub fn slug(name: &str, org_id: &uuid::Uuid) -> String {
    let mut words = String::new();
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if words.len() + word.len() > 40 {
            break;
        }
        if !words.is_empty() {
            words.push('-');
        }
        words.push_str(&word.to_ascii_lowercase());
    }
    let suffix = &org_id.simple().to_string()[..6];
    if words.is_empty() {
        format!("org-{suffix}")
    } else {
        format!("{words}-{suffix}")
    }
}

/// How long an invite can be accepted.
pub const INVITE_TTL_DAYS: i64 = 7;

/// An invite as the Org aggregate keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub invite_id: uuid::Uuid,
    pub email: Email,
    pub role: MemberRole,
    pub expires_at: DateTime<Utc>,
    pub state: InviteState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteState {
    Pending,
    Accepted,
    Revoked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_ids_follow_the_documented_format() {
        assert!(IdentityId::parse("user_2abcXYZ09").is_ok());
        for bad in ["", "user_", "usr_abc", "user_ab-c", "user_a b", "user_ä", "USER_abc"] {
            assert_eq!(IdentityId::parse(bad).unwrap_err().0, "invalid clerk_user_id format", "{bad:?}");
        }
        assert!(IdentityId::parse(&format!("user_{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn roles_are_ordered_and_owner_is_never_assignable() {
        assert!(MemberRole::Owner > MemberRole::Admin);
        assert!(MemberRole::Admin > MemberRole::Developer);
        assert!(MemberRole::Developer > MemberRole::Viewer);
        assert_eq!(MemberRole::parse_assignable("owner").unwrap_err().0, ASSIGNABLE_ROLES);
        assert_eq!(MemberRole::parse_assignable("Admin").unwrap_err().0, ASSIGNABLE_ROLES);
        assert_eq!(MemberRole::parse_assignable("viewer").unwrap(), MemberRole::Viewer);
        assert!(MemberRole::Owner.is_org_admin() && MemberRole::Admin.is_org_admin());
        assert!(!MemberRole::Developer.is_org_admin());
    }

    #[test]
    fn slugs_are_readable_and_unique_per_org() {
        let id = uuid::Uuid::from_u128(0x4f2a1b00_0000_0000_0000_000000000000);
        assert_eq!(slug("Acme Corp", &id), "acme-corp-4f2a1b");
        assert_eq!(slug("  ¡Überfall!  ", &id), "berfall-4f2a1b");
        assert_eq!(slug("日本", &id), "org-4f2a1b");
    }
}
