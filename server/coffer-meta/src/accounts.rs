//! Admin accounts and their API tokens. A token is stored as the blake3 of
//! its text, indexed by that hash for authentication.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::audit::{append_in, AuditDraft};
use crate::engine::{abort, enc, engine, get, scan, tx_err, tx_get};
use crate::{MetaError, MetaStore, Result};

/// The account the first start creates (and schema 1's token belongs to).
pub const BOOTSTRAP_ACCOUNT: &str = "admin";

/// An account's role, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountRole {
    Admin,
    OrgAdmin,
    LegalHoldAdmin,
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub name: Name,
    pub role: AccountRole,
    /// The org subtree a scoped role is limited to.
    pub org: Option<Name>,
    /// Argon2id PHC string, for the console's login.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: UnixMillis,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminTokenRecord {
    pub id: Name,
    pub account: Name,
    /// blake3 of the token; the token itself is never stored.
    pub hash: [u8; 32],
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
    pub created_by: String,
}

impl MetaStore {
    /// Create an account and its audit entry; false if the name is taken.
    pub fn create_account(&self, rec: &AccountRecord, audit: &AuditDraft) -> Result<bool> {
        let t = &self.t;
        let k = rec.name.as_str().as_bytes();
        (&t.accounts, &t.meta, &t.audit)
            .transaction(|(accounts, meta, log)| {
                if accounts.get(k)?.is_some() {
                    return Ok(false);
                }
                accounts.insert(k, enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(true)
            })
            .map_err(tx_err("create account"))
    }

    pub fn account(&self, name: &Name) -> Result<Option<AccountRecord>> {
        get(&self.t.accounts, name.as_str().as_bytes(), "account")
    }

    pub fn accounts(&self) -> Result<Vec<AccountRecord>> {
        scan(&self.t.accounts, &[], "account")
    }

    /// Change an account with `f` and record `audit`; `None` if there is no
    /// such account.
    pub fn update_account(
        &self,
        name: &Name,
        audit: &AuditDraft,
        f: impl Fn(&mut AccountRecord),
    ) -> Result<Option<AccountRecord>> {
        let t = &self.t;
        let k = name.as_str().as_bytes();
        (&t.accounts, &t.meta, &t.audit)
            .transaction(|(accounts, meta, log)| {
                let Some(mut rec) = tx_get::<AccountRecord>(accounts, k, "account")? else {
                    return Ok(None);
                };
                f(&mut rec);
                accounts.insert(k, enc(&rec))?;
                append_in(meta, log, audit)?;
                Ok(Some(rec))
            })
            .map_err(tx_err("update account"))
    }

    /// Delete an account and every token of it; `None` if there is no such
    /// account. Returns the ids of the tokens removed.
    pub fn delete_account(&self, name: &Name, audit: &AuditDraft) -> Result<Option<Vec<Name>>> {
        let tokens = self.admin_tokens(Some(name))?;
        let t = &self.t;
        let k = name.as_str().as_bytes();
        (
            &t.accounts,
            &t.admin_tokens,
            &t.admin_token_hashes,
            &t.meta,
            &t.audit,
        )
            .transaction(|(accounts, tok, hashes, meta, log)| {
                if accounts.remove(k)?.is_none() {
                    return Ok(None);
                }
                for tr in &tokens {
                    tok.remove(tr.id.as_str().as_bytes())?;
                    hashes.remove(&tr.hash[..])?;
                }
                append_in(meta, log, audit)?;
                Ok(Some(tokens.iter().map(|t| t.id.clone()).collect()))
            })
            .map_err(tx_err("delete account"))
    }

    /// Store a new token of an existing account, with its audit entry.
    /// Aborts with an engine error if the account is gone.
    pub fn create_admin_token(&self, rec: &AdminTokenRecord, audit: &AuditDraft) -> Result<()> {
        let t = &self.t;
        (
            &t.accounts,
            &t.admin_tokens,
            &t.admin_token_hashes,
            &t.meta,
            &t.audit,
        )
            .transaction(|(accounts, tok, hashes, meta, log)| {
                if accounts.get(rec.account.as_str().as_bytes())?.is_none() {
                    return abort(MetaError::Engine {
                        context: "create token",
                        source: format!("account {} does not exist", rec.account).into(),
                    });
                }
                tok.insert(rec.id.as_str().as_bytes(), enc(rec))?;
                hashes.insert(&rec.hash[..], rec.id.as_str().as_bytes())?;
                append_in(meta, log, audit)?;
                Ok(())
            })
            .map_err(tx_err("create token"))
    }

    pub fn admin_token(&self, id: &Name) -> Result<Option<AdminTokenRecord>> {
        get(&self.t.admin_tokens, id.as_str().as_bytes(), "admin token")
    }

    /// Tokens of one account, or of every account.
    pub fn admin_tokens(&self, account: Option<&Name>) -> Result<Vec<AdminTokenRecord>> {
        let all: Vec<AdminTokenRecord> = scan(&self.t.admin_tokens, &[], "admin token")?;
        Ok(all
            .into_iter()
            .filter(|t| account.is_none_or(|a| &t.account == a))
            .collect())
    }

    /// The token whose hash is `hash`, with its account.
    pub fn admin_token_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<(AdminTokenRecord, AccountRecord)>> {
        let Some(id) = self
            .t
            .admin_token_hashes
            .get(hash)
            .map_err(engine("read token"))?
        else {
            return Ok(None);
        };
        let Some(tok) = get::<AdminTokenRecord>(&self.t.admin_tokens, &id, "admin token")? else {
            return Ok(None);
        };
        Ok(self.account(&tok.account)?.map(|a| (tok, a)))
    }

    /// Mark a token revoked at `at` (its hash stops authenticating); `None`
    /// if there is no such token. Revoking a revoked token keeps the first
    /// time.
    pub fn revoke_admin_token(
        &self,
        id: &Name,
        at: UnixMillis,
        audit: &AuditDraft,
    ) -> Result<Option<AdminTokenRecord>> {
        let t = &self.t;
        let k = id.as_str().as_bytes();
        (&t.admin_tokens, &t.admin_token_hashes, &t.meta, &t.audit)
            .transaction(|(tok, hashes, meta, log)| {
                let Some(mut rec) = tx_get::<AdminTokenRecord>(tok, k, "admin token")? else {
                    return Ok(None);
                };
                rec.revoked_at = rec.revoked_at.or(Some(at));
                tok.insert(k, enc(&rec))?;
                hashes.remove(&rec.hash[..])?;
                append_in(meta, log, audit)?;
                Ok(Some(rec))
            })
            .map_err(tx_err("revoke token"))
    }
}
