//! Tenant and role rules, applied the same way by every route.
//!
//! One rule for tenancy: another org's things do not exist for you (404), checked before the role
//! (403), so a caller cannot learn that another org's id is real by the status it gets.

use harden_domain::OrgId;

use crate::credentials::Principal;
use crate::error::Error;

pub const ORG_NOT_FOUND: &str = "organization not found";

/// The caller acts inside `org`: a member of it, or the global admin (who may see every org).
pub fn require_in_org(caller: &Principal, org: OrgId) -> Result<(), Error> {
    if caller.is_global_admin() || caller.org_id == Some(org) {
        Ok(())
    } else {
        Err(Error::not_found(ORG_NOT_FOUND))
    }
}

/// The caller administers `org`: its org admin, or the global admin.
pub fn require_admin_of(caller: &Principal, org: OrgId) -> Result<(), Error> {
    require_in_org(caller, org)?;
    if caller.is_global_admin() || caller.role.is_org_admin() {
        Ok(())
    } else {
        Err(Error::forbidden("org admin role required"))
    }
}

pub fn require_global_admin(caller: &Principal) -> Result<(), Error> {
    if caller.is_global_admin() {
        Ok(())
    } else {
        Err(Error::forbidden("global admin role required"))
    }
}

/// The caller's own org; the global admin belongs to none.
pub fn own_org(caller: &Principal) -> Result<OrgId, Error> {
    caller.org_id.ok_or_else(|| Error::not_found("the global admin belongs to no organization"))
}

#[cfg(test)]
mod tests {
    use harden_domain::{ApiKeyId, Role, UserId};
    use uuid::Uuid;

    use super::*;

    fn principal(role: Role, org: Option<u128>) -> Principal {
        Principal {
            user_id: UserId::from_uuid(Uuid::from_u128(1)),
            org_id: org.map(|o| OrgId::from_uuid(Uuid::from_u128(o))),
            role,
            key_id: ApiKeyId::from_uuid(Uuid::from_u128(2)),
        }
    }

    #[test]
    fn another_orgs_things_are_not_found_before_roles_are_checked() {
        let org_b = OrgId::from_uuid(Uuid::from_u128(20));
        for caller in [principal(Role::OrgAdmin, Some(10)), principal(Role::Member, Some(10))] {
            assert!(matches!(require_admin_of(&caller, org_b), Err(Error::NotFound(_))), "{caller:?}");
            assert!(matches!(require_in_org(&caller, org_b), Err(Error::NotFound(_))), "{caller:?}");
        }
    }

    #[test]
    fn members_are_forbidden_admin_actions_in_their_own_org() {
        let org = OrgId::from_uuid(Uuid::from_u128(10));
        assert!(matches!(require_admin_of(&principal(Role::Member, Some(10)), org), Err(Error::Forbidden(_))));
        assert!(require_admin_of(&principal(Role::OrgAdmin, Some(10)), org).is_ok());
        assert!(require_admin_of(&principal(Role::GlobalAdmin, None), org).is_ok());
        assert!(matches!(require_global_admin(&principal(Role::OrgAdmin, Some(10))), Err(Error::Forbidden(_))));
        assert!(matches!(own_org(&principal(Role::GlobalAdmin, None)), Err(Error::NotFound(_))));
    }
}
