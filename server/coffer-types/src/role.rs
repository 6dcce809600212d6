//! The roles of admin accounts (DESIGN §11). What each may do is decided in
//! `coffer-core`; this is only the vocabulary the API and the CLI share.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An admin account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Everything inside one org's subtree (its users, devices, accounts,
    /// reports), nothing above or beside it.
    OrgAdmin,
    /// Legal-hold objects, the audit log, and read access to inventory.
    LegalHoldAdmin,
    /// Reads in scope (the whole server, or one org's subtree); no changes.
    ReadOnly,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::OrgAdmin,
        Role::LegalHoldAdmin,
        Role::ReadOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::OrgAdmin => "org-admin",
            Role::LegalHoldAdmin => "legal-hold-admin",
            Role::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a role: use admin, org-admin, legal-hold-admin or read-only")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_text_and_json() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("root".parse::<Role>().unwrap_err().contains("org-admin"));
    }
}
