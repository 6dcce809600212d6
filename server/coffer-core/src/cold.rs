//! Cold storage (seed 002, research R3.13): a deactivated device stops
//! backing up (`401 device_deactivated`), and its archive is kept whole for
//! the org's `retention.cold_storage`, then purged through the gate. A
//! reactivation within the period brings it back intact. A held archive is
//! never purged: the purge is refused whole (fail closed) and tried again
//! at the next pass (daily by default), and only after the hold is released
//! and its quarantine over does it go.
//!
//! A user on an active hold cannot be deactivated (`409 hold_active`,
//! naming the matters); one of their devices can, and its archive stays
//! held.

use std::sync::Arc;
use std::time::Duration;

use coffer_meta::DeviceRecord;
use coffer_types::wire::DeviceInfo;
use coffer_types::Name;

use crate::access::{Permission, Principal};
use crate::admin::device_missing;
use crate::destroy::{Doomed, GateCtx, Origin, Verdict};
use crate::workers::{StepFuture, Worker};
use crate::{Coffer, CoreError, Result};

fn hold_refusal(what: &str, matters: &[Name]) -> CoreError {
    CoreError::HoldActive(format!(
        "{what} is on legal hold (matter{} {}); release the hold first",
        if matters.len() == 1 { "" } else { "s" },
        matters
            .iter()
            .map(Name::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

impl Coffer {
    /// Deactivate a device: it may not back up, and its archive enters
    /// cold storage. Audited (with the matters, when it stays held).
    pub async fn deactivate_device(&self, p: &Principal, id: &Name) -> Result<DeviceInfo> {
        let d = self
            .seen_device(p, id, Permission::ManageInventory, "device.deactivate")
            .await?;
        if d.deactivated_at.is_some() {
            return Err(CoreError::Conflict(format!(
                "device {id} is deactivated already (coffer admin device list --cold)"
            )));
        }
        self.set_deactivated(p, &d, true, "device.deactivate")
            .await?;
        self.device_now(id)
    }

    /// Bring a device back from cold storage, its archive intact.
    pub async fn reactivate_device(&self, p: &Principal, id: &Name) -> Result<DeviceInfo> {
        let d = self
            .seen_device(p, id, Permission::ManageInventory, "device.reactivate")
            .await?;
        if d.purged_at.is_some() {
            return Err(CoreError::Conflict(format!(
                "device {id}'s archive was purged when its cold storage ended; enroll the device again"
            )));
        }
        if d.deactivated_at.is_none() {
            return Err(CoreError::Conflict(format!("device {id} is active")));
        }
        self.set_deactivated(p, &d, false, "device.reactivate")
            .await?;
        self.device_now(id)
    }

    async fn set_deactivated(
        &self,
        p: &Principal,
        d: &DeviceRecord,
        on: bool,
        action: &str,
    ) -> Result<()> {
        let at = self.compliance_late();
        let held = self.active_matters(&d.org, &d.user)?;
        let mut details = vec![("user", format!("{}/{}", d.org, d.user))];
        if on {
            let cold = self.cold_storage_ms(&d.org)?;
            details.push(("cold_until", crate::format_time(at + cold)));
        }
        if !held.is_empty() {
            details.push((
                "held_by",
                held.iter().map(Name::as_str).collect::<Vec<_>>().join(","),
            ));
        }
        let draft = self.draft(p, action, format!("device:{}", d.id), details);
        let (_, changed) = self
            .meta
            .change_device(&d.id, &draft, |cur| {
                if cur.deactivated_at.is_some() == on || cur.purged_at.is_some() {
                    return None;
                }
                let mut n = cur.clone();
                n.deactivated_at = on.then_some(at);
                Some(n)
            })?
            .ok_or_else(|| device_missing(&d.id))?;
        if !changed {
            return Err(CoreError::Conflict(format!(
                "device {} changed meanwhile; look again",
                d.id
            )));
        }
        self.meta.durable().await?;
        self.health_touched(&d.archive);
        tracing::info!(device = %d.id, deactivated = on, by = %p.account(), "device {}", if on { "deactivated: its archive is in cold storage" } else { "reactivated" });
        Ok(())
    }

    /// Deactivate every device of a user (refused while the user is an
    /// active custodian).
    pub async fn deactivate_user(
        &self,
        p: &Principal,
        org: &Name,
        user: &Name,
    ) -> Result<Vec<DeviceInfo>> {
        let missing = || CoreError::NotFound(format!("user {org}/{user} not found"));
        self.authorize(
            p,
            Permission::ManageInventory,
            "user.deactivate",
            &format!("user:{org}/{user}"),
            Some(org),
            missing,
        )
        .await?;
        self.meta.user(org, user)?.ok_or_else(missing)?;
        let held = self.active_matters(org, user)?;
        if !held.is_empty() {
            let e = hold_refusal(&format!("user {org}/{user}"), &held);
            let mut d = self.draft(
                p,
                "user.deactivate",
                format!("user:{org}/{user}"),
                [
                    ("reason", e.to_string()),
                    (
                        "matters",
                        held.iter().map(Name::as_str).collect::<Vec<_>>().join(","),
                    ),
                ],
            );
            d.outcome = "refused".into();
            self.meta.audit_append(&d)?;
            self.meta.durable().await?;
            return Err(e);
        }
        let mut out = Vec::new();
        for d in self.meta.devices_in_org(org)? {
            if &d.user == user && d.deactivated_at.is_none() {
                self.set_deactivated(p, &d, true, "device.deactivate")
                    .await?;
                out.push(self.device_now(&d.id)?);
            }
        }
        Ok(out)
    }

    /// Purge a deactivated device's archive now (an admin's explicit act:
    /// before its cold storage ends): every backup through the gate, the
    /// blocks then collected. Refused whole when any hold protects it.
    pub async fn purge_device(&self, p: &Principal, id: &Name, reason: &str) -> Result<DeviceInfo> {
        let d = self
            .seen_device(p, id, Permission::ManageServer, "device.purge")
            .await?;
        if reason.trim().is_empty() {
            return Err(CoreError::InvalidRequest(
                "a purge needs a reason (--reason TEXT), for the audit log".into(),
            ));
        }
        if d.deactivated_at.is_none() {
            return Err(CoreError::Conflict(format!(
                "device {id} is active; deactivate it first (its archive then waits in cold storage)"
            )));
        }
        self.purge(p, &d, reason).await?;
        self.device_now(id)
    }

    /// Destroy every backup of `d`'s archive through the gate and mark the
    /// device purged; nothing at all when a hold protects it.
    async fn purge(&self, p: &Principal, d: &DeviceRecord, reason: &str) -> Result<u64> {
        self.persist_compliance()?;
        let mut ctx = GateCtx::default();
        let backups: Vec<Name> = self
            .meta
            .backups(&d.archive)?
            .into_iter()
            .map(|b| b.id)
            .collect();
        // Fail closed: ask the gate about every backup first.
        for b in &backups {
            let what = Doomed::Backup {
                archive: &d.archive,
                backup: b,
                origin: Origin::Purge,
            };
            if let Verdict::Deny { matters, .. } = self.may_destroy(&mut ctx, &what)? {
                let e = hold_refusal(&format!("device {}'s archive", d.id), &matters);
                let mut draft = self.draft(
                    p,
                    "device.purge",
                    format!("device:{}", d.id),
                    [
                        ("reason", e.to_string()),
                        (
                            "matters",
                            matters
                                .iter()
                                .map(Name::as_str)
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                    ],
                );
                draft.outcome = "refused".into();
                self.meta.audit_append(&draft)?;
                self.meta.durable().await?;
                return Err(e);
            }
        }
        let mut n = 0;
        for b in &backups {
            let what = Doomed::Backup {
                archive: &d.archive,
                backup: b,
                origin: Origin::Purge,
            };
            match self.destroy(p, &mut ctx, what, reason)? {
                (Verdict::Allow, true) => n += 1,
                (Verdict::Allow, false) => {}
                (Verdict::Deny { matters, .. }, _) => {
                    // A hold placed between the check and here.
                    self.meta.durable().await?;
                    return Err(hold_refusal(
                        &format!("device {}'s archive", d.id),
                        &matters,
                    ));
                }
            }
        }
        let at = self.compliance_late();
        let draft = self.draft(
            p,
            "device.purged",
            format!("device:{}", d.id),
            [("backups", n.to_string()), ("reason", reason.to_string())],
        );
        self.meta.change_device(&d.id, &draft, |cur| {
            let mut c = cur.clone();
            c.purged_at = Some(at);
            Some(c)
        })?;
        self.meta.durable().await?;
        tracing::info!(device = %d.id, backups = n, "archive purged; garbage collection reclaims its blocks");
        Ok(n)
    }

    /// One pass over cold storage: purge the archives whose period ended
    /// (compliance time); held ones stay and are tried again next pass.
    pub async fn cold_storage_pass(&self) -> Result<(u64, u64)> {
        let now = self.compliance_now();
        let sys = Principal::system();
        let (mut purged, mut held) = (0, 0);
        for d in self.meta.devices()? {
            let (Some(at), None) = (d.deactivated_at, d.purged_at) else {
                continue;
            };
            if now < at.saturating_add(self.cold_storage_ms(&d.org)?) {
                continue;
            }
            match self.purge(&sys, &d, "cold storage period ended").await {
                Ok(_) => purged += 1,
                Err(CoreError::HoldActive(_)) => held += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((purged, held))
    }

    /// The `cold-storage` worker.
    pub fn cold_storage_worker(&self, every: Duration) -> Arc<dyn Worker> {
        Arc::new(ColdWorker {
            core: self.clone(),
            every,
        })
    }
}

struct ColdWorker {
    core: Coffer,
    every: Duration,
}

impl Worker for ColdWorker {
    fn name(&self) -> &str {
        "cold-storage"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_delay(&self) -> Duration {
        self.every.min(Duration::from_secs(60))
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let (purged, held) = self
                .core
                .cold_storage_pass()
                .await
                .map_err(|e| format!("cold storage: {e}"))?;
            if purged + held > 0 {
                tracing::info!(purged, held, "cold storage pass");
            }
            Ok(())
        })
    }
}
