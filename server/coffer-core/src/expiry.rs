//! Retention, executed: the plan for an archive (the built-in tiers, or
//! the org's retention plugin's proposal), the dry run, the run through
//! the destruction gate, and the `retention` worker that runs every
//! archive on a schedule.
//!
//! A plugin proposes; the host decides (DESIGN §3.7). A plan that names a
//! backup the archive does not have is rejected whole (nothing expires,
//! audited `retention.plan_rejected`); a proposal the gate refuses (held,
//! quarantined, newest, younger than `retention.min_age`) is dropped and
//! each drop audited. A plugin that fails expires nothing.

use std::sync::Arc;
use std::time::Duration;

use coffer_types::wire::{RetentionItem, RetentionReport};
use coffer_types::Name;

use crate::access::{Permission, Principal};
use crate::destroy::{Doomed, GateCtx, Origin, Verdict};
use crate::plugins::PlanTarget;
use crate::retention::Tiers;
use crate::settings::Group;
use crate::workers::{StepFuture, Worker};
use crate::{Coffer, CoreError, Result};

impl Default for Tiers {
    fn default() -> Self {
        Tiers {
            keep_all: 7 * 86_400,
            daily: 90 * 86_400,
            weekly: 365 * 86_400,
            monthly: None,
            min_age: 7 * 86_400,
        }
    }
}

/// How an archive's plan is made.
enum Policy {
    Tiers,
    Plugin(String),
}

impl Coffer {
    /// The `retention` values in force for `org`.
    fn retention_values(&self, org: &Name) -> Result<crate::settings::GroupValues> {
        let (chain, _) = self.settings_chain(org)?;
        let refs: Vec<_> = chain.iter().map(|(n, s)| (n, s)).collect();
        Ok(crate::settings::effective(Group::Retention, &refs))
    }

    /// The retention tiers in force for `org` (inherited).
    pub(crate) fn retention_tiers(&self, org: &Name) -> Result<Tiers> {
        let v = self.retention_values(org)?;
        let d = Tiers::default();
        let secs = |k: &str, dflt: u64| v.get(k).and_then(|e| e.value.as_u64()).unwrap_or(dflt);
        Ok(Tiers {
            keep_all: secs("keep_all", d.keep_all),
            daily: secs("daily", d.daily),
            weekly: secs("weekly", d.weekly),
            monthly: v.get("monthly").and_then(|e| e.value.as_u64()),
            min_age: secs("min_age", d.min_age),
        })
    }

    /// The org's cold-storage period, in ms.
    pub(crate) fn cold_storage_ms(&self, org: &Name) -> Result<u64> {
        let v = self.retention_values(org)?;
        Ok(v.get("cold_storage")
            .and_then(|e| e.value.as_u64())
            .unwrap_or(365 * 86_400)
            .saturating_mul(1000))
    }

    fn retention_policy(&self, org: &Name) -> Result<Policy> {
        let v = self.retention_values(org)?;
        Ok(
            match v
                .get("plugin")
                .and_then(|e| e.value.as_str())
                .map(str::trim)
            {
                Some(p) if !p.is_empty() => Policy::Plugin(p.to_string()),
                _ => Policy::Tiers,
            },
        )
    }

    /// The archive `id` names (an archive id, or a device id), checked
    /// against `p`'s scope.
    async fn retention_archive(
        &self,
        p: &Principal,
        id: &str,
        perm: Permission,
        action: &str,
    ) -> Result<Name> {
        let n = Name::new(id.to_string())
            .map_err(|e| CoreError::InvalidRequest(format!("archive: {e}")))?;
        let missing = || CoreError::NotFound(format!("archive {n} does not exist"));
        let dev = match self.meta.device_of_archive(&n)? {
            Some(d) => Some(d),
            None => self.meta.device(&n)?,
        };
        let org = dev.as_ref().map(|d| d.org.clone());
        self.authorize(
            p,
            perm,
            action,
            &format!("archive:{n}"),
            org.as_ref(),
            missing,
        )
        .await?;
        Ok(dev.ok_or_else(missing)?.archive)
    }

    /// `coffer admin retention plan`: what a run would expire now, what it
    /// keeps and by which rule or hold. Nothing changes.
    pub async fn retention_dry_run(&self, p: &Principal, archive: &str) -> Result<RetentionReport> {
        let a = self
            .retention_archive(p, archive, Permission::ReadInventory, "retention.plan")
            .await?;
        self.retention_pass(p, &a, true).await
    }

    /// `coffer admin retention run`: expire now what the plan lets go,
    /// each backup through the gate.
    pub async fn retention_run(&self, p: &Principal, archive: &str) -> Result<RetentionReport> {
        let a = self
            .retention_archive(p, archive, Permission::ManageServer, "retention.run")
            .await?;
        self.retention_pass(p, &a, false).await
    }

    /// Plan (and, unless `dry_run`, execute) retention for one archive.
    pub(crate) async fn retention_pass(
        &self,
        p: &Principal,
        archive: &Name,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let dev = self
            .meta
            .device_of_archive(archive)?
            .ok_or_else(|| CoreError::NotFound(format!("archive {archive} does not exist")))?;
        if !dry_run {
            // Destruction decisions use a persisted clock.
            self.persist_compliance()?;
        }
        let mut ctx = GateCtx::default();
        let view = self.archive_view(&mut ctx, archive)?.clone();
        let policy = self.retention_policy(&dev.org)?;
        let (policy_name, origin, proposed): (String, Origin, Option<Vec<Name>>) = match &policy {
            Policy::Tiers => ("tiers".into(), Origin::Tiers, None),
            Policy::Plugin(name) => {
                let target = PlanTarget {
                    archive: archive.clone(),
                    device: dev.id.clone(),
                    org: dev.org.clone(),
                    backups: self.backups(archive)?,
                    now: view.now,
                };
                let plan = self
                    .plugin_service()?
                    .retention_plan(target, Some(name.clone()))
                    .await;
                let plan = match plan {
                    Ok(v) => v,
                    Err(e) => {
                        if !dry_run {
                            self.system_audit(
                                "retention.plan_failed",
                                &format!("archive:{archive}"),
                                [("plugin", name.clone()), ("reason", e.to_string())],
                            )?;
                            self.meta.durable().await?;
                        }
                        return Err(e);
                    }
                };
                let ids = |k: &str| -> Vec<String> {
                    plan.get(k)
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|e| {
                                    e.get("backup")
                                        .and_then(|b| b.as_str())
                                        .or_else(|| e.as_str())
                                        .map(str::to_string)
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let unknown = ids("unknown");
                if !unknown.is_empty() {
                    let why = format!(
                        "plugin {name} proposed backups archive {archive} does not have ({}); the whole plan is rejected and nothing expires",
                        unknown.join(", ")
                    );
                    if !dry_run {
                        self.system_audit(
                            "retention.plan_rejected",
                            &format!("archive:{archive}"),
                            [("plugin", name.clone()), ("reason", why.clone())],
                        )?;
                        self.meta.durable().await?;
                    }
                    return Err(CoreError::PluginFailed(why));
                }
                // The host's own guard kept some (the newest): they stay
                // proposals, so the gate's refusal of them is audited too.
                let mut all = ids("expire");
                all.extend(ids("kept_by_host"));
                let names = all.into_iter().filter_map(|s| Name::new(s).ok()).collect();
                (format!("plugin:{name}"), Origin::Plugin, Some(names))
            }
        };
        let mut report = RetentionReport {
            archive: archive.clone(),
            device: dev.id.clone(),
            policy: policy_name.clone(),
            now: view.now,
            dry_run,
            kept: 0,
            expired: 0,
            refused: 0,
            items: Vec::new(),
        };
        let proposed: Option<std::collections::HashSet<Name>> =
            proposed.map(|v| v.into_iter().collect());
        for b in &view.backups {
            let keep_rule = match &proposed {
                // Under a plugin, what it did not propose is kept ("plugin").
                Some(set) if !set.contains(&b.id) => Some("plugin".to_string()),
                Some(_) => view.protected.get(&b.id).cloned(),
                None => view
                    .protected
                    .get(&b.id)
                    .cloned()
                    .or_else(|| view.tier_keeps.get(&b.id).map(|k| k.as_str().to_string())),
            };
            let proposed_and_protected =
                proposed.is_some() && keep_rule.as_deref() != Some("plugin") && keep_rule.is_some();
            let item = |verdict: &str, reason: String| RetentionItem {
                backup: b.id.clone(),
                committed_at: b.committed_at,
                verdict: verdict.into(),
                reason,
            };
            if let Some(rule) = keep_rule.filter(|_| !proposed_and_protected || dry_run) {
                report.kept += 1;
                report.items.push(item("keep", rule));
                continue;
            }
            if dry_run {
                report.expired += 1;
                report.items.push(item("expire", policy_name.clone()));
                continue;
            }
            let what = Doomed::Backup {
                archive,
                backup: &b.id,
                origin,
            };
            let reason = format!("retention ({policy_name})");
            match self.destroy(p, &mut ctx, what, &reason)? {
                (Verdict::Allow, _) => {
                    report.expired += 1;
                    report.items.push(item("expired", policy_name.clone()));
                }
                (Verdict::Deny { code, why, .. }, _) => {
                    report.refused += 1;
                    report.items.push(item("refused", format!("{code}: {why}")));
                }
            }
        }
        if !dry_run {
            let d = self.draft(
                p,
                "retention.run",
                format!("archive:{archive}"),
                [
                    ("policy", policy_name.clone()),
                    ("expired", report.expired.to_string()),
                    ("kept", report.kept.to_string()),
                    ("refused", report.refused.to_string()),
                ],
            );
            self.meta.audit_append(&d)?;
            self.meta.durable().await?;
            if report.expired > 0 {
                tracing::info!(archive = %archive, expired = report.expired, kept = report.kept, refused = report.refused, policy = %policy_name, "retention expired backups");
                self.health_touched(archive);
            }
        }
        Ok(report)
    }

    /// The `retention` worker: every archive not in cold storage, every
    /// `every`.
    pub fn retention_worker(&self, every: Duration) -> Arc<dyn Worker> {
        Arc::new(RetentionWorker {
            core: self.clone(),
            every,
        })
    }
}

struct RetentionWorker {
    core: Coffer,
    every: Duration,
}

impl Worker for RetentionWorker {
    fn name(&self) -> &str {
        "retention"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_delay(&self) -> Duration {
        self.every.min(Duration::from_secs(60))
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let p = Principal::system();
            let mut failed = Vec::new();
            let archives = self.core.meta.archive_ids().map_err(|e| e.to_string())?;
            for a in archives {
                match self.core.meta.device_of_archive(&a) {
                    Ok(Some(d)) if d.deactivated_at.is_none() => {}
                    _ => continue,
                }
                if let Err(e) = self.core.retention_pass(&p, &a, false).await {
                    failed.push(format!("{a}: {e}"));
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(format!("retention failed for {}", failed.join("; ")))
            }
        })
    }
}
