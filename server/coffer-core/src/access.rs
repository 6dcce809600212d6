//! Who is calling and what they may do.
//!
//! Authentication (`accounts.rs`) turns an admin token into a [`Principal`];
//! every admin operation of the core takes one and checks it here, so the
//! rules live in one place and no front end can skip them:
//!
//! 1. **Scope.** A role scoped to an org (`org-admin`, a scoped `read-only`)
//!    sees that org's subtree only. An object outside it is answered exactly
//!    like an absent one (`404`), so a scoped caller cannot learn what
//!    exists elsewhere.
//! 2. **Permission.** Within scope, the role must hold the operation's
//!    [`Permission`]; if not, `403 forbidden` names the roles that do.
//!    Refusals of changes are written to the audit log.
//!
//! Device tokens never become principals: they reach the agent protocol
//! only, as a [`DeviceAuth`].

use std::collections::BTreeMap;

use coffer_meta::AuditDraft;
use coffer_types::{Name, Role};

use crate::orgtree::OrgTree;
use crate::{Coffer, CoreError, Result};

/// An authenticated admin caller. Only the core makes one (from a token, or
/// for its own work), so holding one means authentication happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    account: Name,
    role: Role,
    org: Option<Name>,
    token: Option<Name>,
}

impl Principal {
    pub(crate) fn new(account: Name, role: Role, org: Option<Name>, token: Option<Name>) -> Self {
        Self {
            account,
            role,
            org,
            token,
        }
    }

    /// The server acting on its own (upgrades, workers); unscoped admin.
    pub(crate) fn system() -> Self {
        Self::new(
            Name::new("system").expect("a valid name"),
            Role::Admin,
            None,
            None,
        )
    }

    pub fn account(&self) -> &Name {
        &self.account
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The org subtree the principal is limited to; `None` for the whole
    /// server.
    pub fn org(&self) -> Option<&Name> {
        self.org.as_ref()
    }

    /// The token it authenticated with.
    pub fn token(&self) -> Option<&Name> {
        self.token.as_ref()
    }

    /// Whether `org` is within the principal's scope.
    pub fn sees(&self, tree: &OrgTree, org: &Name) -> bool {
        match &self.org {
            None => tree.contains(org),
            Some(root) => tree.is_inside(org, root),
        }
    }
}

/// A device authenticated by its token (or a restore token issued for
/// it): it may reach its own archive only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    pub device: Name,
    pub archive: Name,
    pub org: Name,
    /// Set when a restore token stands for the device: it lists and reads
    /// the archive, never writes (`None` for the device's own token).
    pub restore_token: Option<Name>,
}

/// What an operation needs, by kind. Each route of the admin API declares
/// one (and the router refuses a role without it before reading the body);
/// each core operation checks it again together with the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Orgs, users, devices and their facts; reports.
    ReadInventory,
    /// Create orgs and users; enroll, revoke and rotate devices.
    ManageInventory,
    /// Accounts and tokens (within scope).
    ReadAccounts,
    /// Create, disable and delete accounts; create and revoke tokens.
    ManageAccounts,
    /// The audit log (unscoped roles only).
    ReadAudit,
    /// Server-wide state: workers, plugins (unscoped roles only).
    ReadServer,
    /// Enable, disable and reload plugins (unscoped roles only).
    ManageServer,
    /// Issue restore tokens: read an archive with its escrowed key
    /// (administrator restore).
    RestoreArchive,
    /// Matters, custodians and preservation policies (legal hold).
    ReadHolds,
    /// Create policies and matters, place and release custodians, close
    /// matters.
    ManageHolds,
}

impl Permission {
    pub const ALL: [Permission; 10] = [
        Permission::ReadInventory,
        Permission::ManageInventory,
        Permission::ReadAccounts,
        Permission::ManageAccounts,
        Permission::ReadAudit,
        Permission::ReadServer,
        Permission::ManageServer,
        Permission::RestoreArchive,
        Permission::ReadHolds,
        Permission::ManageHolds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadInventory => "read-inventory",
            Permission::ManageInventory => "manage-inventory",
            Permission::ReadAccounts => "read-accounts",
            Permission::ManageAccounts => "manage-accounts",
            Permission::ReadAudit => "read-audit",
            Permission::ReadServer => "read-server",
            Permission::ManageServer => "manage-server",
            Permission::RestoreArchive => "restore-archive",
            Permission::ReadHolds => "read-holds",
            Permission::ManageHolds => "manage-holds",
        }
    }

    /// Whether the permission changes something (its refusals are audited).
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Permission::ManageInventory
                | Permission::ManageAccounts
                | Permission::ManageServer
                | Permission::RestoreArchive
                | Permission::ManageHolds
        )
    }

    /// Whether only an unscoped principal may hold it.
    fn server_wide(self) -> bool {
        matches!(
            self,
            Permission::ReadAudit | Permission::ReadServer | Permission::ManageServer
        )
    }

    /// The roles that hold it, for messages ("needs the admin or org-admin
    /// role").
    pub fn roles(self) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| role_allows(*r, self))
            .collect()
    }
}

/// The role matrix.
pub fn role_allows(role: Role, p: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Admin => true,
        Role::OrgAdmin => matches!(
            p,
            ReadInventory | ManageInventory | ReadAccounts | ManageAccounts | RestoreArchive
        ),
        Role::LegalHoldAdmin => matches!(p, ReadInventory | ReadAudit | ReadHolds | ManageHolds),
        Role::ReadOnly => matches!(p, ReadInventory | ReadAccounts | ReadServer),
    }
}

/// "the admin or org-admin role".
fn roles_text(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    match names.as_slice() {
        [] => "no role".into(),
        [one] => format!("the {one} role"),
        [rest @ .., last] => format!("the {} or {last} role", rest.join(", ")),
    }
}

impl Coffer {
    /// An audit entry by `p`.
    pub(crate) fn draft(
        &self,
        p: &Principal,
        action: &str,
        target: impl Into<String>,
        details: impl IntoIterator<Item = (&'static str, String)>,
    ) -> AuditDraft {
        AuditDraft {
            at: self.now(),
            actor: p.account.to_string(),
            role: Some(p.role.as_str().to_string()),
            action: action.to_string(),
            target: target.into(),
            outcome: "ok".into(),
            details: details
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// Record a refusal of `action` on `target` (best effort: a failure to
    /// write it is logged, and the refusal stands).
    async fn audit_refusal(&self, p: &Principal, action: &str, target: &str, why: &CoreError) {
        let mut d = self.draft(p, action, target, [("reason", why.to_string())]);
        d.outcome = "refused".into();
        let r = match self.meta.audit_append(&d) {
            Ok(_) => self.meta.durable().await.map_err(CoreError::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, action, "could not write the audit entry of a refusal");
        }
    }

    /// The role-level check: `403` naming the roles that hold `perm` when
    /// `p`'s role lacks it (or holds it only unscoped). Refusals of changes
    /// are audited. Operations run it inside [`Coffer::authorize`].
    pub async fn require(&self, p: &Principal, perm: Permission, action: &str) -> Result<()> {
        self.require_on(p, perm, action, "-").await
    }

    /// [`Coffer::require`] for a request on `target`: the router runs it
    /// with the route (`POST /admin/v1/orgs`) and the path asked for, before
    /// reading the body.
    pub async fn require_on(
        &self,
        p: &Principal,
        perm: Permission,
        action: &str,
        target: &str,
    ) -> Result<()> {
        let allowed = role_allows(p.role, perm) && !(perm.server_wide() && p.org.is_some());
        if allowed {
            return Ok(());
        }
        let holders = perm.roles();
        let why = if role_allows(p.role, perm) {
            CoreError::Forbidden(format!(
                "{action} needs an unscoped role; account {} is {} of org {} only",
                p.account,
                p.role,
                p.org.as_ref().map_or("-", |o| o.as_str())
            ))
        } else {
            CoreError::Forbidden(format!(
                "{action} needs {}; account {} is {}",
                roles_text(&holders),
                p.account,
                p.role
            ))
        };
        if perm.is_change() {
            self.audit_refusal(p, action, target, &why).await;
        }
        Err(why)
    }

    /// The full check of an operation on something in org `org` (or on the
    /// server as a whole, `None`): `hidden()` — the same error an absent
    /// object gives — when `org` is outside `p`'s scope, then
    /// [`Coffer::require`]. Scope refusals of changes are audited too.
    pub(crate) async fn authorize(
        &self,
        p: &Principal,
        perm: Permission,
        action: &str,
        target: &str,
        org: Option<&Name>,
        hidden: impl FnOnce() -> CoreError,
    ) -> Result<()> {
        if let Some(org) = org {
            if !p.sees(&self.org_tree(), org) {
                let e = hidden();
                if perm.is_change() {
                    self.audit_refusal(p, action, target, &e).await;
                }
                return Err(e);
            }
        }
        self.require(p, perm, action).await
    }

    /// A refusal that depends on the request (not only on the role): `403`
    /// with `message`, audited.
    pub(crate) async fn forbid(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        message: String,
    ) -> CoreError {
        self.refused(p, action, target, CoreError::Forbidden(message))
            .await
    }

    /// A refusal of `action` that the state decides (`409`, …): `e`,
    /// audited.
    pub(crate) async fn refused(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        e: CoreError,
    ) -> CoreError {
        self.audit_refusal(p, action, target, &e).await;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_matrix() {
        use Permission::*;
        let table = [
            (Role::Admin, &Permission::ALL[..]),
            (
                Role::OrgAdmin,
                &[
                    ReadInventory,
                    ManageInventory,
                    ReadAccounts,
                    ManageAccounts,
                    RestoreArchive,
                ][..],
            ),
            (
                Role::LegalHoldAdmin,
                &[ReadInventory, ReadAudit, ReadHolds, ManageHolds][..],
            ),
            (
                Role::ReadOnly,
                &[ReadInventory, ReadAccounts, ReadServer][..],
            ),
        ];
        for (role, allowed) in table {
            for p in Permission::ALL {
                assert_eq!(role_allows(role, p), allowed.contains(&p), "{role} {p:?}");
            }
        }
        // Read-only changes nothing.
        for p in Permission::ALL.into_iter().filter(|p| p.is_change()) {
            assert!(!role_allows(Role::ReadOnly, p));
        }
        assert_eq!(
            roles_text(&ManageInventory.roles()),
            "the admin or org-admin role"
        );
        assert_eq!(roles_text(&ManageServer.roles()), "the admin role");
    }
}
