//! Roles. The global admin runs the installation; org admins run one org; members use it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    GlobalAdmin,
    OrgAdmin,
    Member,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::GlobalAdmin => "global_admin",
            Role::OrgAdmin => "org_admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "global_admin" => Some(Role::GlobalAdmin),
            "org_admin" => Some(Role::OrgAdmin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    pub fn is_org_admin(&self) -> bool {
        matches!(self, Role::OrgAdmin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in [Role::GlobalAdmin, Role::OrgAdmin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
    }
}
