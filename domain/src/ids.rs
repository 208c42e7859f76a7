//! Typed ids. Each wraps a UUID so an org id can never be passed where a user id belongs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(
    /// An organization (a tenant).
    OrgId
);
uuid_id!(
    /// A user: the global admin, an org admin, or a member of an org.
    UserId
);
uuid_id!(
    /// One API key of a user. A user may hold several (creation, rotation, login, Cloud API).
    ApiKeyId
);

/// Namespace for ids that harden derives rather than draws (UUID v5).
const HARDEN_NAMESPACE: Uuid = Uuid::from_u128(0x6861_7264_656e_4000_8000_0000_0000_0000);

impl OrgId {
    /// The org a self-service registration becomes: derived from the registration, so a verification
    /// that stopped half-way and is tried again finishes the same org instead of making a second.
    pub fn of_registration(registration_id: &str) -> OrgId {
        OrgId(Uuid::new_v5(&HARDEN_NAMESPACE, format!("registration-org:{registration_id}").as_bytes()))
    }
}

impl UserId {
    /// The global admin has one fixed aggregate id, so two instances bootstrapping an empty database
    /// at once race on one aggregate and exactly one of them wins.
    pub const GLOBAL_ADMIN: UserId = UserId(Uuid::from_u128(0x6861_7264_656e_4000_8000_0000_0000_0001));

    /// The first org admin of an org has an id derived from the org id. Whoever creates it (the global
    /// admin, or a verified self-service registration) races on the same aggregate, so an org can never
    /// get two "first" admins.
    pub fn first_admin_of(org: OrgId) -> UserId {
        let mut name = b"first-admin:".to_vec();
        name.extend_from_slice(org.as_uuid().as_bytes());
        UserId(Uuid::new_v5(&HARDEN_NAMESPACE, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_admin_id_is_stable_per_org_and_distinct_across_orgs() {
        let a = OrgId::from_uuid(Uuid::from_u128(1));
        let b = OrgId::from_uuid(Uuid::from_u128(2));
        assert_eq!(UserId::first_admin_of(a), UserId::first_admin_of(a));
        assert_ne!(UserId::first_admin_of(a), UserId::first_admin_of(b));
        assert_ne!(UserId::first_admin_of(a), UserId::GLOBAL_ADMIN);
    }

    #[test]
    fn ids_parse_only_uuids() {
        assert!("not-a-uuid".parse::<OrgId>().is_err());
        let id = Uuid::from_u128(7);
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), UserId::from_uuid(id));
    }
}
