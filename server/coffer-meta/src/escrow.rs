//! Key escrow: an archive's key sealed by its agent to an org's escrow
//! public key (the server stores it and cannot open it), and the
//! short-lived, read-only restore tokens an administrator issues to open an
//! archive with the escrow private key.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::audit::{append_in, AuditDraft};
use crate::engine::{enc, engine, get, scan, tx_err};
use crate::{MetaStore, Result};

/// An archive's escrowed key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscrowRecord {
    pub archive: Name,
    pub device: Name,
    /// The sealed key, as the agent sent it (opaque to the server).
    pub sealed: Vec<u8>,
    /// The escrow public key it is sealed to.
    pub public_key: String,
    pub stored_at: UnixMillis,
}

/// A restore token: read-only access to one archive until `expires_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTokenRecord {
    /// Names the token in the audit log (`rt_…`); the token itself is
    /// never stored, only its blake3.
    pub id: Name,
    pub token_hash: [u8; 32],
    pub device: Name,
    pub archive: Name,
    pub org: Name,
    /// The account that issued it.
    pub issued_by: String,
    pub issued_at: UnixMillis,
    pub expires_at: UnixMillis,
}

impl MetaStore {
    /// Store (or replace) an archive's escrowed key, with its audit entry.
    pub fn set_escrow(&self, rec: &EscrowRecord, audit: &AuditDraft) -> Result<()> {
        let t = &self.t;
        (&t.escrow, &t.meta, &t.audit)
            .transaction(|(escrow, meta, log)| {
                escrow.insert(rec.archive.as_str().as_bytes(), enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(())
            })
            .map_err(tx_err("store an escrowed key"))
    }

    pub fn escrow(&self, archive: &Name) -> Result<Option<EscrowRecord>> {
        get(&self.t.escrow, archive.as_str().as_bytes(), "escrowed key")
    }

    /// Every escrowed key, by archive.
    pub fn escrows(&self) -> Result<Vec<EscrowRecord>> {
        scan(&self.t.escrow, &[], "escrowed key")
    }

    /// Delete an archive's escrowed key with the audit entry of the
    /// destruction; false (and nothing written) when there is none.
    pub fn delete_escrow(&self, archive: &Name, audit: &AuditDraft) -> Result<bool> {
        let t = &self.t;
        let k = archive.as_str().as_bytes();
        (&t.escrow, &t.meta, &t.audit)
            .transaction(|(escrow, meta, log)| {
                if escrow.remove(k)?.is_none() {
                    return Ok(false);
                }
                append_in(meta, log, audit)?;
                Ok(true)
            })
            .map_err(tx_err("delete an escrowed key"))
    }

    /// Record a new restore token, with its audit entry.
    pub fn add_restore_token(&self, rec: &RestoreTokenRecord, audit: &AuditDraft) -> Result<()> {
        let t = &self.t;
        (&t.restore_tokens, &t.meta, &t.audit)
            .transaction(|(tokens, meta, log)| {
                tokens.insert(&rec.token_hash[..], enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(())
            })
            .map_err(tx_err("record a restore token"))
    }

    /// The restore token whose hash is `hash`, expired or not.
    pub fn restore_token(&self, hash: &[u8; 32]) -> Result<Option<RestoreTokenRecord>> {
        get(&self.t.restore_tokens, hash, "restore token")
    }

    /// Forget restore tokens that expired before `now`; how many.
    pub fn prune_restore_tokens(&self, now: UnixMillis) -> Result<usize> {
        let all: Vec<RestoreTokenRecord> = scan(&self.t.restore_tokens, &[], "restore token")?;
        let mut n = 0;
        for r in all.iter().filter(|r| r.expires_at < now) {
            self.t
                .restore_tokens
                .remove(&r.token_hash[..])
                .map_err(engine("forget an expired restore token"))?;
            n += 1;
        }
        Ok(n)
    }
}
