//! Tokens: generation, hashing and checking. Tokens are 32 random bytes shown
//! once; the server keeps only their blake3 and compares in constant time.

use coffer_meta::DeviceRecord;
use subtle::ConstantTimeEq;

use crate::{Coffer, CoreError, Result};

const DEVICE_PREFIX: &str = "cfd_";
const ADMIN_PREFIX: &str = "cfa_";

pub(crate) fn new_token(prefix: &str) -> Result<(String, [u8; 32])> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| CoreError::Internal(format!("read OS randomness: {e}")))?;
    let token = format!("{prefix}{}", hex::encode(raw));
    let hash = hash(&token);
    Ok((token, hash))
}

pub(crate) fn hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

pub(crate) fn new_device_token() -> Result<(String, [u8; 32])> {
    new_token(DEVICE_PREFIX)
}

impl Coffer {
    /// Create the admin token on first start. Returns the token when one was
    /// created (the caller shows or stores it once), `None` if one exists.
    pub async fn ensure_admin_token(&self) -> Result<Option<String>> {
        if self.meta.admin_token_hash()?.is_some() {
            return Ok(None);
        }
        let (token, hash) = new_token(ADMIN_PREFIX)?;
        self.meta.set_admin_token_hash(hash)?;
        self.meta.durable().await?;
        Ok(Some(token))
    }

    /// Replace the admin token (e.g. when `admin.token` was lost).
    pub async fn reset_admin_token(&self) -> Result<String> {
        let (token, hash) = new_token(ADMIN_PREFIX)?;
        self.meta.set_admin_token_hash(hash)?;
        self.meta.durable().await?;
        Ok(token)
    }

    /// Check an admin token.
    pub fn authenticate_admin(&self, token: &str) -> Result<()> {
        let stored = self
            .meta
            .admin_token_hash()?
            .ok_or(CoreError::Unauthorized)?;
        if bool::from(hash(token).ct_eq(&stored)) && token.starts_with(ADMIN_PREFIX) {
            Ok(())
        } else {
            Err(CoreError::Unauthorized)
        }
    }

    /// The device a token belongs to; revoked or unknown tokens are refused.
    pub fn authenticate_device(&self, token: &str) -> Result<DeviceRecord> {
        if !token.starts_with(DEVICE_PREFIX) {
            return Err(CoreError::Unauthorized);
        }
        let h = hash(token);
        let device = self
            .meta
            .device_by_token(&h)?
            .ok_or(CoreError::Unauthorized)?;
        if device.revoked || !bool::from(device.token_hash.ct_eq(&h)) {
            return Err(CoreError::Unauthorized);
        }
        Ok(device)
    }
}
