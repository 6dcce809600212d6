//! Tokens: generation, hashing, and authentication of device tokens. Tokens
//! are a prefix and 32 random bytes in hex, shown once; the server keeps only
//! their blake3 and compares in constant time. Admin tokens are checked in
//! `accounts.rs`.

use subtle::ConstantTimeEq;

use crate::access::DeviceAuth;
use crate::{Coffer, CoreError, Result};

const DEVICE_PREFIX: &str = "cfd_";
pub(crate) const ADMIN_PREFIX: &str = "cfa_";

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
    /// The device a token belongs to; revoked or unknown tokens are refused.
    pub fn authenticate_device(&self, token: &str) -> Result<DeviceAuth> {
        if token.starts_with(crate::escrow::RESTORE_PREFIX) {
            return Err(CoreError::Forbidden(
                "a restore token lists and reads its archive, never writes: this request needs \
                 the device's own token"
                    .into(),
            ));
        }
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
        if device.deactivated_at.is_some() {
            return Err(CoreError::DeviceDeactivated(format!(
                "device {} was deactivated: its archive is in cold storage and it may not back up                  until an administrator reactivates it (coffer admin device reactivate {})",
                device.id, device.id
            )));
        }
        Ok(DeviceAuth {
            device: device.id,
            archive: device.archive,
            org: device.org,
            restore_token: None,
        })
    }

    /// A device token, or a restore token issued for a device: what the
    /// read-only routes of the agent protocol take.
    pub fn authenticate_reader(&self, token: &str) -> Result<DeviceAuth> {
        if token.starts_with(crate::escrow::RESTORE_PREFIX) {
            self.authenticate_restore(token)
        } else {
            self.authenticate_device(token)
        }
    }
}
