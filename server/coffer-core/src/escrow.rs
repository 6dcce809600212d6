//! Key escrow and administrator restore (seed 000).
//!
//! - Under `security.archive_security = standard` with a
//!   `security.escrow_public_key` in force, the agent seals its archive key
//!   to that key (an X25519 sealed box) and stores it here. The server keeps
//!   the sealed bytes and can never open them: the private half stays with
//!   the operator, offline.
//! - With `security.admin_restore = on`, an admin (or the device's
//!   org-admin) issues a **restore token** for one device: it lists and
//!   reads that archive, never writes, and expires. With it and the escrow
//!   private key, `coffer-agent restore --escrow-key` restores without the
//!   passphrase.
//! - Under **enhanced** security nothing is escrowed: uploads are refused
//!   (`409 escrow_refused`) and any escrowed key of the org's archives is
//!   destroyed, through [`Coffer::destroy`], when the org comes under
//!   enhanced security (and again at every start, should a crash have come
//!   between the settings change and the destruction).

use coffer_meta::{EscrowRecord, RestoreTokenRecord};
use coffer_types::wire::{
    DeviceSecurity, EscrowInfo, EscrowUpload, IssueRestoreToken, RestoreToken,
    ESCROW_PUBLIC_KEY_PREFIX, ESCROW_SEALED_MAX,
};
use coffer_types::{Name, UnixMillis};
use subtle::ConstantTimeEq;

use crate::access::{DeviceAuth, Permission, Principal};
use crate::auth::{hash, new_token};
use crate::destroy::Doomed;
use std::collections::BTreeMap;

use crate::settings::{self, Effective, Group, OrgSettings};
use crate::{format_time, random16, Coffer, CoreError, Result};

pub(crate) const RESTORE_PREFIX: &str = "cfr_";
/// How long a restore token works when the request does not say.
const DEFAULT_LIFETIME_SECS: u64 = 3600;
/// The longest a restore token may work.
const MAX_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// The security settings in force for one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Security {
    pub(crate) enhanced: bool,
    /// Empty when none is set.
    pub(crate) escrow_public_key: String,
    pub(crate) admin_restore: bool,
}

impl Security {
    /// The security settings in `values` (the group's values in force).
    pub(crate) fn of(values: &BTreeMap<String, (Effective, Option<Name>)>) -> Self {
        let word = |k: &str| {
            values
                .get(k)
                .and_then(|(e, _)| e.value.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        Self {
            enhanced: word("archive_security") == "enhanced",
            escrow_public_key: word("escrow_public_key"),
            admin_restore: word("admin_restore") == "on",
        }
    }
}

/// Whether `text` is an escrow public key as `coffer-agent escrow keygen`
/// writes it (the server checks the form only; it does no cryptography).
pub(crate) fn check_public_key(text: &str) -> Result<(), String> {
    let ok = text
        .strip_prefix(ESCROW_PUBLIC_KEY_PREFIX)
        .is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not an escrow public key: it is {ESCROW_PUBLIC_KEY_PREFIX} and 64 \
             lowercase hex digits, the one line of the escrow.pub `coffer-agent escrow keygen` \
             writes"
        ))
    }
}

fn escrow_info(e: EscrowRecord) -> EscrowInfo {
    EscrowInfo {
        archive: e.archive,
        public_key: e.public_key,
        sealed: hex::encode(e.sealed),
        stored_at: e.stored_at,
    }
}

impl Coffer {
    /// The security group in force for `org`.
    pub(crate) fn security(&self, org: &Name) -> Result<Security> {
        let (chain, _) = self.settings_chain(org)?;
        let refs: Vec<(&Name, &OrgSettings)> = chain.iter().map(|(n, s)| (n, s)).collect();
        Ok(Security::of(&settings::effective_locked(
            Group::Security,
            &refs,
        )))
    }

    /// What `GET /v1/settings` tells the agent of security.
    pub(crate) fn device_security(&self, d: &DeviceAuth) -> Result<DeviceSecurity> {
        let s = self.security(&d.org)?;
        let escrowed = self.meta.escrow(&d.archive)?;
        Ok(DeviceSecurity {
            archive_security: if s.enhanced { "enhanced" } else { "standard" }.into(),
            escrow_public_key: (!s.enhanced && !s.escrow_public_key.is_empty())
                .then_some(s.escrow_public_key),
            escrowed_to: escrowed.map(|e| e.public_key),
        })
    }

    /// Store the archive key of `d`'s archive sealed to the escrow key in
    /// force. Refused under enhanced security (`409 escrow_refused`), with
    /// no escrow key in force, or sealed to another key (`409 conflict`).
    pub async fn put_escrow(&self, d: &DeviceAuth, req: &EscrowUpload) -> Result<EscrowInfo> {
        let sealed = hex::decode(&req.sealed)
            .ok()
            .filter(|b| (32..=ESCROW_SEALED_MAX).contains(&b.len()))
            .ok_or_else(|| {
                CoreError::InvalidRequest(format!(
                    "sealed is not a sealed key: it is 32 to {ESCROW_SEALED_MAX} bytes in hex"
                ))
            })?;
        let rec = {
            // Checked and stored under the lock the settings changes take
            // to destroy escrowed keys: an upload racing a switch to
            // enhanced is either refused or destroyed after it.
            let _one = self.escrow_lock.lock().unwrap_or_else(|e| e.into_inner());
            let s = self.security(&d.org)?;
            if s.enhanced {
                return Err(CoreError::EscrowRefused(format!(
                    "org {} uses enhanced archive security: only the passphrase opens archive \
                     {}, and no escrowed key is taken",
                    d.org, d.archive
                )));
            }
            if s.escrow_public_key.is_empty() {
                return Err(CoreError::Conflict(format!(
                    "org {} has no security.escrow_public_key in force: there is nothing to \
                     escrow to",
                    d.org
                )));
            }
            if s.escrow_public_key != req.public_key {
                return Err(CoreError::Conflict(format!(
                    "the key is sealed to {}, but the escrow key in force for org {} is {}: \
                     read /v1/settings and seal it again",
                    req.public_key, d.org, s.escrow_public_key
                )));
            }
            let rec = EscrowRecord {
                archive: d.archive.clone(),
                device: d.device.clone(),
                sealed,
                public_key: req.public_key.clone(),
                stored_at: self.now(),
            };
            let draft = coffer_meta::AuditDraft {
                at: rec.stored_at,
                actor: format!("device:{}", d.device),
                role: None,
                action: "escrow.store".into(),
                target: format!("archive:{}", d.archive),
                outcome: "ok".into(),
                details: [("public_key".to_string(), req.public_key.clone())].into(),
            };
            self.meta.set_escrow(&rec, &draft)?;
            rec
        };
        self.meta.durable().await?;
        tracing::info!(archive = %d.archive, device = %d.device, "archive key escrowed");
        Ok(escrow_info(rec))
    }

    /// The escrowed key of `d`'s archive (`404` when there is none, or
    /// when the org now uses enhanced security).
    pub fn escrow(&self, d: &DeviceAuth) -> Result<EscrowInfo> {
        let none = || {
            CoreError::NotFound(format!(
                "archive {} has no escrowed key on this server",
                d.archive
            ))
        };
        if self.security(&d.org)?.enhanced {
            return Err(none());
        }
        Ok(escrow_info(self.meta.escrow(&d.archive)?.ok_or_else(none)?))
    }

    /// Destroy every escrowed key of an archive whose org uses enhanced
    /// security, as `p`; how many. Runs after each change of a security
    /// group and at start.
    pub(crate) fn destroy_escrow_under_enhanced(&self, p: &Principal) -> Result<usize> {
        let _one = self.escrow_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        // Orgs' security, worked out once each (this runs at every start).
        let mut enhanced: std::collections::HashMap<Name, bool> = Default::default();
        for e in self.meta.escrows()? {
            let Some(dev) = self.meta.device_of_archive(&e.archive)? else {
                continue;
            };
            let under_enhanced = match enhanced.get(&dev.org) {
                Some(x) => *x,
                None => {
                    let x = self.security(&dev.org)?.enhanced;
                    enhanced.insert(dev.org.clone(), x);
                    x
                }
            };
            if under_enhanced
                && self
                    .destroy(
                        p,
                        &mut Default::default(),
                        Doomed::EscrowKey {
                            archive: &e.archive,
                        },
                        &format!("org {} uses enhanced archive security", dev.org),
                    )?
                    .1
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Issue a restore token for `device` (seed 000's administrator
    /// restore): needs `security.admin_restore = on` for its org, standard
    /// security, and an escrowed key.
    pub async fn issue_restore_token(
        &self,
        p: &Principal,
        device: &Name,
        req: &IssueRestoreToken,
    ) -> Result<RestoreToken> {
        let action = "device.restore_token";
        let target = format!("device:{device}");
        let d = self
            .seen_device(p, device, Permission::RestoreArchive, action)
            .await?;
        let secs = match req.expires.as_deref() {
            None => DEFAULT_LIFETIME_SECS,
            Some(t) => crate::duration::parse(t)
                .map_err(|e| CoreError::InvalidRequest(format!("expires: {e}")))?
                .as_secs(),
        };
        if secs == 0 || secs > MAX_LIFETIME_SECS {
            return Err(CoreError::InvalidRequest(format!(
                "expires: a restore token works for 1 s to 7 d, not {}",
                crate::duration::format(std::time::Duration::from_secs(secs))
            )));
        }
        let s = self.security(&d.org)?;
        let refusal = if s.enhanced {
            Some(CoreError::ArchiveSecurityConflict(format!(
                "org {} uses enhanced archive security: only the passphrase opens device {}'s \
                 archive, and no administrator restore is possible",
                d.org, d.id
            )))
        } else if !s.admin_restore {
            Some(CoreError::Conflict(format!(
                "administrator restore is off for org {} (security.admin_restore); turn it on \
                 for the org first",
                d.org
            )))
        } else if d.revoked {
            Some(CoreError::Conflict(format!(
                "device {} is revoked; rotate its token to reactivate it before restoring it",
                d.id
            )))
        } else {
            None
        };
        if let Some(e) = refusal {
            return Err(self.refused(p, action, &target, e).await);
        }
        let Some(escrowed) = self.meta.escrow(&d.archive)? else {
            let e = CoreError::Conflict(format!(
                "device {} has not escrowed its archive key yet: its agent does at its next \
                 command once security.escrow_public_key is set for org {}",
                d.id, d.org
            ));
            return Err(self.refused(p, action, &target, e).await);
        };
        let now = self.now();
        let (token, token_hash) = new_token(RESTORE_PREFIX)?;
        let rec = RestoreTokenRecord {
            id: Name::random("rt", random16()?),
            token_hash,
            device: d.id.clone(),
            archive: d.archive.clone(),
            org: d.org.clone(),
            issued_by: p.account().to_string(),
            issued_at: now,
            expires_at: now + secs * 1000,
        };
        self.meta.prune_restore_tokens(now)?;
        self.meta.add_restore_token(
            &rec,
            &self.draft(
                p,
                action,
                target,
                [
                    ("token", rec.id.to_string()),
                    ("archive", rec.archive.to_string()),
                    ("expires_at", format_time(rec.expires_at)),
                ],
            ),
        )?;
        self.meta.durable().await?;
        tracing::info!(device = %d.id, token = %rec.id, by = %p.account(), "restore token issued");
        Ok(RestoreToken {
            id: rec.id,
            device: rec.device,
            archive: rec.archive,
            token,
            expires_at: rec.expires_at,
            escrow_public_key: escrowed.public_key,
        })
    }

    /// The archive a restore token reads. It stops working when it
    /// expires, when its device is revoked, and when its org turns
    /// administrator restore off or takes enhanced security.
    pub(crate) fn authenticate_restore(&self, token: &str) -> Result<DeviceAuth> {
        let h = hash(token);
        let rec = self
            .meta
            .restore_token(&h)?
            .filter(|r| bool::from(r.token_hash.ct_eq(&h)))
            .ok_or(CoreError::Unauthorized)?;
        let now: UnixMillis = self.now();
        if now >= rec.expires_at {
            return Err(CoreError::TokenRejected(format!(
                "restore token {} expired at {}; ask for a new one",
                rec.id,
                format_time(rec.expires_at)
            )));
        }
        let device = self
            .meta
            .device(&rec.device)?
            .filter(|d| !d.revoked)
            .ok_or_else(|| {
                CoreError::TokenRejected(format!(
                    "restore token {}: device {} is revoked or gone",
                    rec.id, rec.device
                ))
            })?;
        let s = self.security(&device.org)?;
        if s.enhanced || !s.admin_restore {
            return Err(CoreError::TokenRejected(format!(
                "restore token {}: administrator restore is no longer allowed for org {}",
                rec.id, device.org
            )));
        }
        Ok(DeviceAuth {
            device: device.id,
            archive: device.archive,
            org: device.org,
            restore_token: Some(rec.id),
        })
    }
}

#[cfg(test)]
mod tests {

    use coffer_types::wire::SetOrgSettings;
    use coffer_types::{ErrorCode, Role};

    use super::*;
    use crate::testing::{name, Fixture};
    use crate::AuditQuery;

    const KEY: &str =
        "coffer-escrow-v1:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str =
        "coffer-escrow-v1:2222222222222222222222222222222222222222222222222222222222222222";

    async fn set(f: &Fixture, org: &str, key: &str, value: &str) -> Result<()> {
        f.core
            .set_org_settings(
                &f.admin(),
                &name(org),
                &SetOrgSettings {
                    group: "security".into(),
                    values: [(key.to_string(), serde_json::Value::from(value))].into(),
                    mode: None,
                },
            )
            .await
            .map(|_| ())
    }

    fn upload(key: &str) -> EscrowUpload {
        EscrowUpload {
            public_key: key.into(),
            sealed: hex::encode([9u8; 80]),
        }
    }

    async fn actions(f: &Fixture, action: &str) -> Vec<String> {
        f.core
            .audit_list(
                &f.admin(),
                AuditQuery {
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .entries
            .into_iter()
            .filter(|e| e.action == action)
            .map(|e| format!("{} {}", e.outcome, e.target))
            .collect()
    }

    #[tokio::test]
    async fn escrow_restore_tokens_and_enhanced_security_on_the_manual_clock() {
        let f = Fixture::new();
        f.org("acme", None).await;
        f.org("beta", None).await;
        let dev = f.device("acme", "ann", "laptop").await;
        let d = f.core.authenticate_device(&dev.token).unwrap();
        let c = &f.core;
        let admin = f.admin();
        let issue = |expires: &str| IssueRestoreToken {
            expires: Some(expires.into()),
        };

        // No escrow key in force: nothing to escrow to; a malformed key is
        // refused as a setting.
        assert_eq!(
            c.put_escrow(&d, &upload(KEY)).await.unwrap_err().code(),
            ErrorCode::Conflict
        );
        let e = set(&f, "acme", "escrow_public_key", "ssh-ed25519 AAAA")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is not an escrow public key"), "{e}");
        set(&f, "acme", "escrow_public_key", KEY).await.unwrap();
        let s = c.device_security(&d).unwrap();
        assert_eq!(
            (s.escrow_public_key.as_deref(), s.escrowed_to),
            (Some(KEY), None)
        );
        // Sealed to another key: refused; to the key in force: stored.
        assert_eq!(
            c.put_escrow(&d, &upload(OTHER)).await.unwrap_err().code(),
            ErrorCode::Conflict
        );
        c.put_escrow(&d, &upload(KEY)).await.unwrap();
        assert_eq!(
            c.device_security(&d).unwrap().escrowed_to.as_deref(),
            Some(KEY)
        );

        // Restore tokens: refused while admin_restore is off, then issued
        // (an org-admin of another org sees no such device; read-only may
        // not issue).
        let e = c
            .issue_restore_token(&admin, &d.device, &issue("1h"))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("administrator restore is off"),
            "{e}"
        );
        set(&f, "acme", "admin_restore", "on").await.unwrap();
        let beta = f.principal("bea", Role::OrgAdmin, Some("beta"));
        assert_eq!(
            c.issue_restore_token(&beta, &d.device, &issue("1h"))
                .await
                .unwrap_err()
                .code(),
            ErrorCode::NotFound
        );
        let ro = f.principal("rita", Role::ReadOnly, None);
        assert_eq!(
            c.issue_restore_token(&ro, &d.device, &issue("1h"))
                .await
                .unwrap_err()
                .code(),
            ErrorCode::Forbidden
        );
        assert_eq!(
            c.issue_restore_token(&admin, &d.device, &issue("8d"))
                .await
                .unwrap_err()
                .code(),
            ErrorCode::InvalidRequest
        );
        let acme = f.principal("otto", Role::OrgAdmin, Some("acme"));
        let t = c
            .issue_restore_token(&acme, &d.device, &issue("10m"))
            .await
            .unwrap();
        assert!(t.token.starts_with("cfr_"));
        assert_eq!(t.escrow_public_key, KEY);
        // It reads the archive, never writes.
        let r = c.authenticate_reader(&t.token).unwrap();
        assert_eq!(
            (&r.archive, r.restore_token.as_ref()),
            (&d.archive, Some(&t.id))
        );
        assert_eq!(c.escrow(&r).unwrap().public_key, KEY);
        assert_eq!(
            c.authenticate_device(&t.token).unwrap_err().code(),
            ErrorCode::Forbidden
        );
        // Expired on the server's clock: refused, with the reason.
        f.clock.advance(601_000);
        let e = c.authenticate_reader(&t.token).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unauthorized);
        assert!(e.to_string().contains("expired"), "{e}");
        // Turning admin_restore off stops a live token at once.
        let t = c
            .issue_restore_token(&admin, &d.device, &issue("1h"))
            .await
            .unwrap();
        c.authenticate_reader(&t.token).unwrap();
        set(&f, "acme", "admin_restore", "off").await.unwrap();
        assert!(c
            .authenticate_reader(&t.token)
            .unwrap_err()
            .to_string()
            .contains("no longer allowed"));

        // Enhanced: the escrowed key is destroyed, through the gate and
        // audited; uploads are refused; the agent is told to escrow
        // nothing; restore tokens are refused.
        set(&f, "acme", "archive_security", "enhanced")
            .await
            .unwrap();
        assert_eq!(c.meta.escrow(&d.archive).unwrap(), None);
        assert_eq!(
            actions(&f, "escrow.destroy").await,
            [format!("ok archive:{}", d.archive)]
        );
        assert_eq!(
            c.put_escrow(&d, &upload(KEY)).await.unwrap_err().code(),
            ErrorCode::EscrowRefused
        );
        let s = c.device_security(&d).unwrap();
        assert_eq!(
            (s.archive_security.as_str(), s.escrow_public_key),
            ("enhanced", None)
        );
        assert_eq!(c.escrow(&d).unwrap_err().code(), ErrorCode::NotFound);
        assert_eq!(
            c.issue_restore_token(&admin, &d.device, &issue("1h"))
                .await
                .unwrap_err()
                .code(),
            ErrorCode::ArchiveSecurityConflict
        );
        // Every issuance and every refusal is in the audit log.
        let issued = actions(&f, "device.restore_token").await;
        let target = format!("device:{}", d.device);
        assert!(issued.contains(&format!("ok {target}")), "{issued:?}");
        assert!(issued.contains(&format!("refused {target}")), "{issued:?}");
        assert_eq!(
            actions(&f, "escrow.store").await,
            [format!("ok archive:{}", d.archive)]
        );

        // A key left under enhanced (a crash between the switch and the
        // destruction) is destroyed at the next start.
        c.meta
            .set_escrow(
                &EscrowRecord {
                    archive: d.archive.clone(),
                    device: d.device.clone(),
                    sealed: vec![1; 80],
                    public_key: KEY.into(),
                    stored_at: 1,
                },
                &c.draft(&admin, "escrow.store", "test", []),
            )
            .unwrap();
        let again = f.restarted();
        assert_eq!(again.meta.escrow(&d.archive).unwrap(), None);
    }
}
