//! Admin accounts and API tokens: the bootstrap account, authentication of
//! admin tokens into a [`Principal`], and the account and token operations.
//!
//! Tokens are `cfa_` and 64 hex characters (32 random bytes), shown once;
//! the server keeps their blake3 and compares it in constant time. A token
//! works until it expires or is revoked, and while its account is enabled.

use coffer_meta::{AccountRecord, AccountRole, AdminTokenRecord, BOOTSTRAP_ACCOUNT};
use coffer_types::wire::{AccountInfo, CreateAccount, CreateToken, NewToken, TokenInfo};
use coffer_types::{Name, Role, UnixMillis};
use subtle::ConstantTimeEq;

use crate::access::{Permission, Principal};
use crate::auth::{hash, new_token, ADMIN_PREFIX};
use crate::{duration, random16, Coffer, CoreError, Result};

/// How long a token works when its creator does not say.
pub const DEFAULT_TOKEN_LIFETIME: &str = "90d";
/// The shortest password accepted.
const MIN_PASSWORD: usize = 12;

pub(crate) fn role_of(r: AccountRole) -> Role {
    match r {
        AccountRole::Admin => Role::Admin,
        AccountRole::OrgAdmin => Role::OrgAdmin,
        AccountRole::LegalHoldAdmin => Role::LegalHoldAdmin,
        AccountRole::ReadOnly => Role::ReadOnly,
    }
}

fn stored_role(r: Role) -> AccountRole {
    match r {
        Role::Admin => AccountRole::Admin,
        Role::OrgAdmin => AccountRole::OrgAdmin,
        Role::LegalHoldAdmin => AccountRole::LegalHoldAdmin,
        Role::ReadOnly => AccountRole::ReadOnly,
    }
}

fn token_state(t: &AdminTokenRecord, now: UnixMillis) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

fn token_info(t: AdminTokenRecord, now: UnixMillis) -> TokenInfo {
    TokenInfo {
        state: token_state(&t, now).into(),
        id: t.id,
        account: t.account,
        created_at: t.created_at,
        created_by: t.created_by,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
    }
}

/// Hash a password with Argon2id (the crate's defaults: 19 MiB, 2 passes).
fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&random16()?)
        .map_err(|e| CoreError::Internal(format!("make a password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(format!("hash the password: {e}")))
}

impl Coffer {
    fn account_info(&self, a: AccountRecord) -> Result<AccountInfo> {
        let now = self.now();
        let active_tokens = self
            .meta
            .admin_tokens(Some(&a.name))?
            .iter()
            .filter(|t| token_state(t, now) == "active")
            .count() as u64;
        Ok(AccountInfo {
            role: role_of(a.role),
            has_password: a.password_hash.is_some(),
            name: a.name,
            org: a.org,
            disabled: a.disabled,
            created_at: a.created_at,
            created_by: a.created_by,
            active_tokens,
        })
    }

    /// The org an account's scope lives in, for visibility: an unscoped
    /// account is visible to unscoped principals only.
    fn visible_account(&self, p: &Principal, a: &AccountRecord) -> bool {
        match (&a.org, p.org()) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(org), Some(_)) => p.sees(&self.org_tree(), org),
        }
    }

    fn no_account(name: &Name) -> CoreError {
        CoreError::NotFound(format!("account {name} does not exist"))
    }

    /// An account `p` may see, or the same 404 as an absent one.
    fn seen_account(&self, p: &Principal, name: &Name) -> Result<AccountRecord> {
        self.meta
            .account(name)?
            .filter(|a| self.visible_account(p, a))
            .ok_or_else(|| Self::no_account(name))
    }

    /// An account `p` may change with `action`: `403` when the role cannot
    /// manage accounts, the same `404` as an absent account when it is
    /// outside `p`'s scope.
    async fn manageable_account(
        &self,
        p: &Principal,
        name: &Name,
        action: &str,
    ) -> Result<AccountRecord> {
        self.require(p, Permission::ManageAccounts, action).await?;
        let a = self.seen_account(p, name)?;
        self.authorize(
            p,
            Permission::ManageAccounts,
            action,
            &format!("account:{name}"),
            a.org.as_ref(),
            || Self::no_account(name),
        )
        .await?;
        Ok(a)
    }

    fn new_admin_token(
        &self,
        account: &Name,
        expires_at: Option<UnixMillis>,
        created_by: String,
    ) -> Result<(AdminTokenRecord, String)> {
        let (token, hash) = new_token(ADMIN_PREFIX)?;
        let rec = AdminTokenRecord {
            id: Name::random("tk", random16()?),
            account: account.clone(),
            hash,
            created_at: self.now(),
            expires_at,
            revoked_at: None,
            created_by,
        };
        Ok((rec, token))
    }

    /// The bootstrap `admin` account, as made by `by`.
    fn bootstrap_record(&self, by: &str) -> AccountRecord {
        AccountRecord {
            name: Name::new(BOOTSTRAP_ACCOUNT).expect("a valid name"),
            role: AccountRole::Admin,
            org: None,
            password_hash: None,
            disabled: false,
            created_at: self.now(),
            created_by: by.into(),
        }
    }

    /// A token that does not expire for the bootstrap account, made by the
    /// server itself on behalf of `by`, durable when this returns.
    async fn bootstrap_token(&self, by: &str) -> Result<String> {
        let name = Name::new(BOOTSTRAP_ACCOUNT).expect("a valid name");
        let (rec, token) = self.new_admin_token(&name, None, by.into())?;
        self.meta.create_admin_token(
            &rec,
            &self.draft(
                &Principal::system(),
                "token.create",
                format!("token:{}", rec.id),
                [("account", name.to_string())],
            ),
        )?;
        self.meta.durable().await?;
        Ok(token)
    }

    /// On first start: the `admin` account with a token that does not
    /// expire. Returns the token when it made one (the caller stores it in
    /// `admin.token`); `None` if any account exists.
    pub async fn bootstrap_admin(&self) -> Result<Option<String>> {
        if !self.meta.accounts()?.is_empty() {
            return Ok(None);
        }
        let acct = self.bootstrap_record("first start");
        let created = self.meta.create_account(
            &acct,
            &self.draft(
                &Principal::system(),
                "account.create",
                format!("account:{}", acct.name),
                [("role", "admin".into())],
            ),
        )?;
        if !created {
            return Ok(None);
        }
        self.bootstrap_token("first start").await.map(Some)
    }

    /// Replace the bootstrap account's tokens (when `admin.token` was lost):
    /// the `admin` account is created if missing and enabled, its tokens are
    /// revoked, and a new one that does not expire is returned. For the
    /// operator on the server's machine (`coffer reset-admin-token`), with
    /// the server stopped.
    pub async fn reset_admin_token(&self) -> Result<String> {
        let sys = Principal::system();
        let name = Name::new(BOOTSTRAP_ACCOUNT).expect("a valid name");
        let target = format!("account:{name}");
        match self.meta.account(&name)? {
            None => {
                let acct = self.bootstrap_record("reset-admin-token");
                self.meta.create_account(
                    &acct,
                    &self.draft(
                        &sys,
                        "account.create",
                        &target,
                        [("by", "reset-admin-token".into())],
                    ),
                )?;
            }
            Some(a) if a.disabled || a.role != AccountRole::Admin || a.org.is_some() => {
                self.meta.update_account(
                    &name,
                    &self.draft(
                        &sys,
                        "account.restore",
                        &target,
                        [("by", "reset-admin-token".into())],
                    ),
                    |a| {
                        a.disabled = false;
                        a.role = AccountRole::Admin;
                        a.org = None;
                    },
                )?;
            }
            Some(_) => {}
        }
        let now = self.now();
        for t in self.meta.admin_tokens(Some(&name))? {
            if t.revoked_at.is_none() {
                self.meta.revoke_admin_token(
                    &t.id,
                    now,
                    &self.draft(
                        &sys,
                        "token.revoke",
                        format!("token:{}", t.id),
                        [("by", "reset-admin-token".into())],
                    ),
                )?;
            }
        }
        self.bootstrap_token("reset-admin-token").await
    }

    /// Check an admin token: the principal it stands for, or `401` (unknown,
    /// revoked or expired token, disabled account).
    pub fn authenticate_admin(&self, token: &str) -> Result<Principal> {
        if !token.starts_with(ADMIN_PREFIX) {
            return Err(CoreError::Unauthorized);
        }
        let h = hash(token);
        let (t, a) = self
            .meta
            .admin_token_by_hash(&h)?
            .ok_or(CoreError::Unauthorized)?;
        if !bool::from(t.hash.ct_eq(&h)) || t.revoked_at.is_some() {
            return Err(CoreError::Unauthorized);
        }
        if let Some(e) = t.expires_at.filter(|e| *e <= self.now()) {
            return Err(CoreError::TokenRejected(format!(
                "token {} expired at {}; create a new one with `coffer admin token create`",
                t.id,
                crate::format_time(e)
            )));
        }
        if a.disabled {
            return Err(CoreError::TokenRejected(format!(
                "account {} is disabled",
                a.name
            )));
        }
        Ok(Principal::new(a.name, role_of(a.role), a.org, Some(t.id)))
    }

    /// Create an account. An `org-admin` creates `org-admin` and `read-only`
    /// accounts inside its own subtree only.
    pub async fn create_account(&self, p: &Principal, req: CreateAccount) -> Result<AccountInfo> {
        let action = "account.create";
        let target = format!("account:{}", req.name);
        let org_missing = |o: &Name| CoreError::NotFound(format!("org {o} does not exist"));
        match (req.role, &req.org) {
            (Role::OrgAdmin, None) => {
                return Err(CoreError::InvalidRequest(
                    "an org-admin account needs an org (--org): the subtree it administers".into(),
                ))
            }
            (Role::Admin | Role::LegalHoldAdmin, Some(_)) => {
                return Err(CoreError::InvalidRequest(format!(
                    "a {} account is not scoped to an org: leave out the org",
                    req.role
                )))
            }
            _ => {}
        }
        self.require(p, Permission::ManageAccounts, action).await?;
        if let Some(o) = &req.org {
            self.authorize(
                p,
                Permission::ManageAccounts,
                action,
                &target,
                Some(o),
                || org_missing(o),
            )
            .await?;
            if !self.org_tree().contains(o) {
                return Err(org_missing(o));
            }
        }
        let scoped_creator = p.org().is_some();
        if scoped_creator
            && (req.org.is_none() || matches!(req.role, Role::Admin | Role::LegalHoldAdmin))
        {
            return Err(self
                .forbid(
                    p,
                    action,
                    &target,
                    format!(
                        "a {} account without an org is made by an admin; an org-admin makes org-admin and read-only accounts of its own subtree",
                        req.role
                    ),
                )
                .await);
        }
        let password_hash = match &req.password {
            Some(pw) if pw.chars().count() < MIN_PASSWORD => {
                return Err(CoreError::InvalidRequest(format!(
                    "a password is at least {MIN_PASSWORD} characters"
                )))
            }
            Some(pw) => Some(hash_password(pw)?),
            None => None,
        };
        let rec = AccountRecord {
            name: req.name.clone(),
            role: stored_role(req.role),
            org: req.org.clone(),
            password_hash,
            disabled: false,
            created_at: self.now(),
            created_by: p.account().to_string(),
        };
        let mut details = vec![("role", req.role.to_string())];
        if let Some(o) = &req.org {
            details.push(("org", o.to_string()));
        }
        if !self
            .meta
            .create_account(&rec, &self.draft(p, action, &target, details))?
        {
            return Err(CoreError::AlreadyExists(format!(
                "an account named {} exists",
                req.name
            )));
        }
        self.meta.durable().await?;
        tracing::info!(account = %req.name, role = %req.role, by = %p.account(), "account created");
        self.account_info(rec)
    }

    /// The accounts `p` may see, by name.
    pub async fn accounts(&self, p: &Principal) -> Result<Vec<AccountInfo>> {
        self.require(p, Permission::ReadAccounts, "listing accounts")
            .await?;
        self.meta
            .accounts()?
            .into_iter()
            .filter(|a| self.visible_account(p, a))
            .map(|a| self.account_info(a))
            .collect()
    }

    pub async fn account(&self, p: &Principal, name: &Name) -> Result<AccountInfo> {
        self.require(p, Permission::ReadAccounts, "reading an account")
            .await?;
        let a = self.seen_account(p, name)?;
        self.account_info(a)
    }

    /// Whether removing `name`'s admin powers would leave no enabled admin.
    fn last_admin(&self, name: &Name) -> Result<bool> {
        let others = self
            .meta
            .accounts()?
            .into_iter()
            .filter(|a| {
                &a.name != name && a.role == AccountRole::Admin && !a.disabled && a.org.is_none()
            })
            .count();
        Ok(others == 0)
    }

    /// Disable (or enable again) an account: its tokens stop (or resume)
    /// working at once.
    pub async fn set_account_disabled(
        &self,
        p: &Principal,
        name: &Name,
        disabled: bool,
    ) -> Result<AccountInfo> {
        let action = if disabled {
            "account.disable"
        } else {
            "account.enable"
        };
        let target = format!("account:{name}");
        let a = self.manageable_account(p, name, action).await?;
        if disabled && a.role == AccountRole::Admin && self.last_admin(name)? {
            return Err(CoreError::Conflict(format!(
                "account {name} is the last enabled admin; create another admin account first"
            )));
        }
        let rec = self
            .meta
            .update_account(name, &self.draft(p, action, &target, []), |a| {
                a.disabled = disabled
            })?
            .ok_or_else(|| Self::no_account(name))?;
        self.meta.durable().await?;
        tracing::info!(account = %name, disabled, by = %p.account(), "account {}", if disabled { "disabled" } else { "enabled" });
        self.account_info(rec)
    }

    /// Delete an account and its tokens.
    pub async fn delete_account(&self, p: &Principal, name: &Name) -> Result<()> {
        let action = "account.delete";
        let target = format!("account:{name}");
        let a = self.manageable_account(p, name, action).await?;
        if a.role == AccountRole::Admin && self.last_admin(name)? {
            return Err(CoreError::Conflict(format!(
                "account {name} is the last enabled admin; create another admin account first"
            )));
        }
        let removed = self
            .meta
            .delete_account(
                name,
                &self.draft(p, action, &target, [("role", role_of(a.role).to_string())]),
            )?
            .ok_or_else(|| Self::no_account(name))?;
        self.meta.durable().await?;
        tracing::info!(account = %name, tokens = removed.len(), by = %p.account(), "account deleted");
        Ok(())
    }

    /// Create a token for an account `p` may see. `expires`: a duration
    /// (`"90d"`), or `"never"`; default [`DEFAULT_TOKEN_LIFETIME`].
    pub async fn create_token(&self, p: &Principal, req: CreateToken) -> Result<NewToken> {
        let a = self
            .manageable_account(p, &req.account, "token.create")
            .await?;
        let spec = req.expires.as_deref().unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let expires_at = match spec {
            "never" => None,
            s => {
                let d = duration::parse(s)
                    .map_err(|e| CoreError::InvalidRequest(format!("expires: {e}")))?;
                if d.is_zero() {
                    return Err(CoreError::InvalidRequest(
                        "expires: a token must work for some time; say \"never\" for no end".into(),
                    ));
                }
                Some(self.now().saturating_add(d.as_millis() as u64))
            }
        };
        let (rec, token) = self.new_admin_token(&a.name, expires_at, p.account().to_string())?;
        self.meta.create_admin_token(
            &rec,
            &self.draft(
                p,
                "token.create",
                format!("token:{}", rec.id),
                [
                    ("account", a.name.to_string()),
                    ("expires", spec.to_string()),
                ],
            ),
        )?;
        self.meta.durable().await?;
        tracing::info!(token = %rec.id, account = %a.name, by = %p.account(), "admin token created");
        Ok(NewToken {
            id: rec.id,
            account: rec.account,
            token,
            expires_at,
        })
    }

    /// Tokens of the accounts `p` may see (of one account with `account`).
    pub async fn tokens(&self, p: &Principal, account: Option<&Name>) -> Result<Vec<TokenInfo>> {
        self.require(p, Permission::ReadAccounts, "listing tokens")
            .await?;
        if let Some(a) = account {
            self.seen_account(p, a)?;
        }
        let visible: Vec<Name> = self
            .meta
            .accounts()?
            .into_iter()
            .filter(|a| self.visible_account(p, a))
            .map(|a| a.name)
            .collect();
        let now = self.now();
        Ok(self
            .meta
            .admin_tokens(account)?
            .into_iter()
            .filter(|t| visible.contains(&t.account))
            .map(|t| token_info(t, now))
            .collect())
    }

    /// Revoke a token: it stops working at once.
    pub async fn revoke_token(&self, p: &Principal, id: &Name) -> Result<TokenInfo> {
        let action = "token.revoke";
        let target = format!("token:{id}");
        let missing = || CoreError::NotFound(format!("token {id} does not exist"));
        self.require(p, Permission::ManageAccounts, action).await?;
        let t = self.meta.admin_token(id)?.ok_or_else(missing)?;
        let account = self.seen_account(p, &t.account).map_err(|_| missing())?;
        self.authorize(
            p,
            Permission::ManageAccounts,
            action,
            &target,
            account.org.as_ref(),
            missing,
        )
        .await?;
        let now = self.now();
        let rec = self
            .meta
            .revoke_admin_token(
                id,
                now,
                &self.draft(p, action, &target, [("account", account.name.to_string())]),
            )?
            .ok_or_else(missing)?;
        self.meta.durable().await?;
        tracing::info!(token = %id, by = %p.account(), "admin token revoked");
        Ok(token_info(rec, now))
    }
}
