//! Legal hold (seed 002, research B3): preservation policies, matters and
//! custodians, with the role rules, the two-person release and the
//! post-release quarantine. What a hold protects is decided by the gate
//! (`destroy.rs`), which asks [`Coffer::holds_on`].
//!
//! - Only `legal-hold-admin` and `admin` hold `manage-holds`: they create
//!   policies and matters, place and release custodians, close matters. A
//!   legal-hold admin scoped to an org places and releases only users in
//!   its subtree.
//! - A hold covers the user, so every device and archive of the user,
//!   enrolled before or after, in cold storage or not, and every backup
//!   committed while it lasts.
//! - A release needs a reason; with `[legal_hold] release_approvals = 2` it
//!   waits for a second legal-hold admin. Once released, data the hold
//!   alone protected stays for `release_quarantine` more (compliance time).

use std::time::Duration;

use coffer_meta::{
    AddCustodian, Created, CustodianRecord, KeepRecord, MatterRecord, MatterStatus, PolicyRecord,
    ReleaseStep,
};
use coffer_types::wire::{
    CreateHoldPolicy, CreateMatter, CustodianInfo, CustodianRequest, HoldPolicyInfo, MatterInfo,
    ReleaseStepInfo,
};
use coffer_types::{Name, UnixMillis};

use crate::access::{Permission, Principal};
use crate::retention::Tiers;
use crate::{Coffer, CoreError, Result};

/// The `[legal_hold]` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldSettings {
    /// Legal-hold admins a release needs (1, or 2 for the two-person rule).
    pub release_approvals: u8,
    /// How long data a released hold alone protected stays.
    pub release_quarantine: Duration,
}

impl Default for HoldSettings {
    fn default() -> Self {
        Self {
            release_approvals: 1,
            release_quarantine: Duration::from_secs(7 * 86_400),
        }
    }
}

/// What the holds on a user make of `device_defaults.keep_deleted`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HeldKeepDeleted {
    /// With an active hold: seconds (`None` forever), when the newest was
    /// placed, and the matters.
    pub held: Option<(Option<u64>, UnixMillis, Vec<Name>)>,
    /// The newest release (0: none).
    pub released_at: UnixMillis,
}

/// A hold that protects a user's data now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HoldOn {
    pub matter: Name,
    /// What its policy keeps.
    pub keep: KeepRecord,
    /// `Some(end)`: released, in quarantine until `end`.
    pub quarantine_until: Option<UnixMillis>,
}

impl HoldOn {
    /// `hold:MATTER` or `quarantine:MATTER`.
    pub fn label(&self) -> String {
        match self.quarantine_until {
            None => format!("hold:{}", self.matter),
            Some(_) => format!("quarantine:{}", self.matter),
        }
    }
}

const REASON_MAX: usize = 1024;

fn check_reason(reason: &str, required: bool, what: &str) -> Result<String> {
    let r = reason.trim();
    if required && r.is_empty() {
        return Err(CoreError::InvalidRequest(format!(
            "{what} needs a reason (--reason TEXT): say why, for the audit log"
        )));
    }
    if r.chars().count() > REASON_MAX || r.chars().any(char::is_control) {
        return Err(CoreError::InvalidRequest(format!(
            "a reason is at most {REASON_MAX} printable characters"
        )));
    }
    Ok(r.to_string())
}

fn name(s: &str, what: &str) -> Result<Name> {
    Name::new(s.to_string()).map_err(|e| CoreError::InvalidRequest(format!("{what}: {e}")))
}

fn tier_secs(v: &std::collections::BTreeMap<String, String>, key: &str) -> Result<Option<u64>> {
    match v.get(key) {
        None => Ok(None),
        Some(t) => crate::duration::parse(t)
            .map(|d| Some(d.as_secs()))
            .map_err(|e| CoreError::InvalidRequest(format!("retention {key}: {e}"))),
    }
}

fn policy_info(r: PolicyRecord) -> HoldPolicyInfo {
    let fmt = |s: u64| crate::duration::format(Duration::from_secs(s));
    let (keep, retention) = match &r.keep {
        KeepRecord::All => ("all".to_string(), Default::default()),
        KeepRecord::Tiers {
            keep_all,
            daily,
            weekly,
            monthly,
        } => (
            "tiers".to_string(),
            [
                ("keep_all".to_string(), fmt(*keep_all)),
                ("daily".to_string(), fmt(*daily)),
                ("weekly".to_string(), fmt(*weekly)),
                (
                    "monthly".to_string(),
                    monthly.map_or("forever".to_string(), fmt),
                ),
            ]
            .into(),
        ),
    };
    HoldPolicyInfo {
        name: r.name,
        keep,
        retention,
        keep_deleted: r.keep_deleted.map_or("forever".to_string(), fmt),
        created_by: r.created_by,
        created_at: r.created_at,
    }
}

impl Coffer {
    pub fn set_hold_settings(&self, s: HoldSettings) {
        *self
            .hold_settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = s;
    }

    pub(crate) fn hold_settings(&self) -> HoldSettings {
        *self.hold_settings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn custodian_info(&self, c: CustodianRecord, now: UnixMillis) -> CustodianInfo {
        let q = self.hold_settings().release_quarantine.as_millis() as u64;
        let until = c.released_at.map(|r| r + q);
        let state = match (c.released_at, until) {
            (None, _) if c.approvals.is_empty() => "active",
            (None, _) => "release_pending",
            (Some(_), Some(u)) if u > now => "quarantined",
            _ => "released",
        };
        CustodianInfo {
            matter: c.matter,
            org: c.org,
            user: c.user,
            added_by: c.added_by,
            added_at: c.added_at,
            reason: c.reason,
            state: state.into(),
            approvals: c
                .approvals
                .into_iter()
                .map(|s| ReleaseStepInfo {
                    by: s.by,
                    at: s.at,
                    reason: s.reason,
                })
                .collect(),
            released_at: c.released_at,
            quarantine_until: until,
        }
    }

    fn matter_info(&self, m: MatterRecord, with_custodians: bool) -> Result<MatterInfo> {
        let now = self.compliance_now();
        let mine: Vec<CustodianRecord> = self
            .meta
            .custodians()?
            .into_iter()
            .filter(|c| c.matter == m.name)
            .collect();
        Ok(MatterInfo {
            active_custodians: mine.iter().filter(|c| c.active()).count() as u64,
            custodians: if with_custodians {
                mine.into_iter()
                    .map(|c| self.custodian_info(c, now))
                    .collect()
            } else {
                Vec::new()
            },
            name: m.name,
            description: m.description,
            policy: m.policy,
            status: match m.status {
                MatterStatus::Active => "active",
                MatterStatus::Closed => "closed",
            }
            .into(),
            created_by: m.created_by,
            created_at: m.created_at,
            closed_by: m.closed_by,
            closed_at: m.closed_at,
            close_reason: m.close_reason,
        })
    }

    /// Create a preservation policy: keep every backup (the default), or
    /// tiers (each applied as the stricter of it and the org's own).
    pub async fn create_hold_policy(
        &self,
        p: &Principal,
        req: CreateHoldPolicy,
    ) -> Result<HoldPolicyInfo> {
        self.require(p, Permission::ManageHolds, "hold.policy.create")
            .await?;
        let n = name(&req.name, "policy name")?;
        let keep = match req.keep.as_deref().unwrap_or("all") {
            "all" => {
                if !req.retention.is_empty() {
                    return Err(CoreError::InvalidRequest(
                        "a policy that keeps all backups takes no retention tiers; use --keep tiers with --retention".into(),
                    ));
                }
                KeepRecord::All
            }
            "tiers" => {
                for k in req.retention.keys() {
                    if !["keep_all", "daily", "weekly", "monthly"].contains(&k.as_str()) {
                        return Err(CoreError::InvalidRequest(format!(
                            "retention {k} is not a tier; the tiers are keep_all, daily, weekly, monthly"
                        )));
                    }
                }
                // Unset tiers are the defaults; each ends no earlier than the
                // one before.
                let keep_all = tier_secs(&req.retention, "keep_all")?.unwrap_or(7 * 86_400);
                let daily = tier_secs(&req.retention, "daily")?.unwrap_or(90 * 86_400);
                let weekly = tier_secs(&req.retention, "weekly")?.unwrap_or(365 * 86_400);
                let monthly = match req.retention.get("monthly").map(String::as_str) {
                    None | Some("forever") => None,
                    Some(_) => tier_secs(&req.retention, "monthly")?,
                };
                if daily < keep_all || weekly < daily || monthly.is_some_and(|m| m < weekly) {
                    return Err(CoreError::InvalidRequest(
                        "retention tiers must end in order: keep_all ≤ daily ≤ weekly ≤ monthly"
                            .into(),
                    ));
                }
                KeepRecord::Tiers {
                    keep_all,
                    daily,
                    weekly,
                    monthly,
                }
            }
            other => {
                return Err(CoreError::InvalidRequest(format!(
                    "keep is {other:?}; it is all or tiers"
                )))
            }
        };
        let keep_deleted = match req.keep_deleted.as_deref().map(str::trim) {
            None | Some("forever") => None,
            Some(t) => Some(
                crate::duration::parse(t)
                    .map_err(|e| {
                        CoreError::InvalidRequest(format!(
                            "keep_deleted: {e}; it is forever or a duration (90d)"
                        ))
                    })?
                    .as_secs(),
            ),
        };
        let rec = PolicyRecord {
            name: n.clone(),
            keep,
            keep_deleted,
            created_by: p.account().to_string(),
            created_at: self.now(),
        };
        let d = self.draft(
            p,
            "hold.policy.create",
            format!("policy:{n}"),
            [
                ("keep", serde_json::to_string(&rec.keep).unwrap_or_default()),
                (
                    "keep_deleted",
                    rec.keep_deleted
                        .map_or("forever".to_string(), |s| s.to_string()),
                ),
            ],
        );
        match self.meta.create_hold_policy(&rec, &d)? {
            Created::Created => {}
            _ => {
                return Err(CoreError::AlreadyExists(format!(
                    "a preservation policy named {n} exists"
                )))
            }
        }
        self.meta.durable().await?;
        Ok(policy_info(rec))
    }

    pub async fn hold_policies(&self, p: &Principal) -> Result<Vec<HoldPolicyInfo>> {
        self.require(p, Permission::ReadHolds, "hold.policy.list")
            .await?;
        Ok(self
            .meta
            .hold_policies()?
            .into_iter()
            .map(policy_info)
            .collect())
    }

    pub async fn create_matter(&self, p: &Principal, req: CreateMatter) -> Result<MatterInfo> {
        self.require(p, Permission::ManageHolds, "hold.matter.create")
            .await?;
        let n = name(&req.name, "matter name")?;
        let policy = name(&req.policy, "policy")?;
        let description = check_reason(&req.description, false, "a matter")?;
        let rec = MatterRecord {
            name: n.clone(),
            description,
            policy: policy.clone(),
            status: MatterStatus::Active,
            created_by: p.account().to_string(),
            created_at: self.now(),
            closed_by: None,
            closed_at: None,
            close_reason: None,
        };
        let d = self.draft(
            p,
            "hold.matter.create",
            format!("matter:{n}"),
            [("matter", n.to_string()), ("policy", policy.to_string())],
        );
        match self.meta.create_matter(&rec, &d)? {
            Created::Created => {}
            Created::Exists => {
                return Err(CoreError::AlreadyExists(format!(
                    "a matter named {n} exists"
                )))
            }
            Created::NoPolicy => {
                return Err(CoreError::NotFound(format!(
                    "preservation policy {policy} not found (coffer admin hold policy list)"
                )))
            }
        }
        self.meta.durable().await?;
        tracing::info!(matter = %n, by = %p.account(), "matter created");
        self.matter_info(rec, false)
    }

    pub async fn matters(&self, p: &Principal) -> Result<Vec<MatterInfo>> {
        self.require(p, Permission::ReadHolds, "hold.matter.list")
            .await?;
        self.meta
            .matters()?
            .into_iter()
            .map(|m| self.matter_info(m, false))
            .collect()
    }

    fn matter_named(&self, n: &str) -> Result<MatterRecord> {
        let n = name(n, "matter")?;
        self.meta
            .matter(&n)?
            .ok_or_else(|| CoreError::NotFound(format!("matter {n} not found")))
    }

    pub async fn matter(&self, p: &Principal, n: &str) -> Result<MatterInfo> {
        self.require(p, Permission::ReadHolds, "hold.matter.show")
            .await?;
        let m = self.matter_named(n)?;
        let mut info = self.matter_info(m, true)?;
        let tree = self.org_tree();
        info.custodians.retain(|c| p.sees(&tree, &c.org));
        Ok(info)
    }

    /// Close a matter: every active custodian is released (one audit entry
    /// each), and the quarantine begins for all of them.
    pub async fn close_matter(&self, p: &Principal, n: &str, reason: &str) -> Result<MatterInfo> {
        self.require(p, Permission::ManageHolds, "hold.matter.close")
            .await?;
        let reason = check_reason(reason, true, "closing a matter")?;
        let m = self.matter_named(n)?;
        if p.org().is_some() {
            let e = CoreError::Forbidden(
                "closing a matter releases custodians in every org: it needs an unscoped legal-hold-admin or admin".into(),
            );
            let mut d = self.draft(
                p,
                "hold.matter.close",
                format!("matter:{}", m.name),
                [("matter", m.name.to_string()), ("reason", e.to_string())],
            );
            d.outcome = "refused".into();
            self.meta.audit_append(&d)?;
            self.meta.durable().await?;
            return Err(e);
        }
        if m.status == MatterStatus::Closed {
            return Err(CoreError::Conflict(format!(
                "matter {} is closed already",
                m.name
            )));
        }
        let at = self.compliance_late();
        let closed = MatterRecord {
            status: MatterStatus::Closed,
            closed_by: Some(p.account().to_string()),
            closed_at: Some(at),
            close_reason: Some(reason.clone()),
            ..m.clone()
        };
        let d = self.draft(
            p,
            "hold.matter.close",
            format!("matter:{}", m.name),
            [("matter", m.name.to_string()), ("reason", reason.clone())],
        );
        let released = |c: &CustodianRecord| {
            self.draft(
                p,
                "hold.release",
                format!("user:{}/{}", c.org, c.user),
                [
                    ("matter", c.matter.to_string()),
                    ("reason", format!("matter closed: {reason}")),
                ],
            )
        };
        let (rec, out) = self
            .meta
            .close_matter(&m.name, &closed, at, &d, &released)?
            .ok_or_else(|| CoreError::NotFound(format!("matter {} not found", m.name)))?;
        self.meta.durable().await?;
        tracing::info!(matter = %m.name, released = out.len(), by = %p.account(), "matter closed");
        self.matter_info(rec, true)
    }

    /// The user a custodian request names, checked against `p`'s scope.
    async fn custodian_user(
        &self,
        p: &Principal,
        req: &CustodianRequest,
        action: &str,
    ) -> Result<(Name, Name)> {
        let user = name(&req.user, "user")?;
        let org = req.org.as_deref().map(|o| name(o, "org")).transpose()?;
        let tree = self.org_tree();
        let found: Vec<_> = self
            .meta
            .users()?
            .into_iter()
            .filter(|u| u.name == user && org.as_ref().is_none_or(|o| &u.org == o))
            .filter(|u| p.sees(&tree, &u.org))
            .collect();
        let missing = || CoreError::NotFound(format!("user {user} not found"));
        match found.as_slice() {
            [] => {
                self.require(p, Permission::ManageHolds, action).await?;
                Err(missing())
            }
            [u] => {
                self.authorize(
                    p,
                    Permission::ManageHolds,
                    action,
                    &format!("user:{}/{}", u.org, u.name),
                    Some(&u.org),
                    missing,
                )
                .await?;
                Ok((u.org.clone(), u.name.clone()))
            }
            many => Err(CoreError::Conflict(format!(
                "user {user} exists in {} orgs ({}); name the org (--org)",
                many.len(),
                many.iter()
                    .map(|u| u.org.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Place a user on hold under a matter.
    pub async fn add_custodian(
        &self,
        p: &Principal,
        req: CustodianRequest,
    ) -> Result<CustodianInfo> {
        let (org, user) = self.custodian_user(p, &req, "hold.place").await?;
        let reason = check_reason(&req.reason, false, "placing a hold")?;
        let matter = self.matter_named(&req.matter)?;
        let rec = CustodianRecord {
            matter: matter.name.clone(),
            org: org.clone(),
            user: user.clone(),
            added_by: p.account().to_string(),
            added_at: self.compliance_late(),
            reason: reason.clone(),
            approvals: Vec::new(),
            released_at: None,
        };
        let d = self.draft(
            p,
            "hold.place",
            format!("user:{org}/{user}"),
            [("matter", matter.name.to_string()), ("reason", reason)],
        );
        let now = self.compliance_now();
        match self.meta.add_custodian(&rec, &d)? {
            AddCustodian::Added(c) => {
                self.meta.durable().await?;
                tracing::info!(matter = %c.matter, org = %org, user = %user, by = %p.account(), "custodian placed on hold");
                Ok(self.custodian_info(c, now))
            }
            AddCustodian::AlreadyHeld(c) => Err(CoreError::AlreadyExists(format!(
                "{org}/{user} is on hold under matter {} already (since {})",
                c.matter,
                crate::format_time(c.added_at)
            ))),
            AddCustodian::NoMatter => Err(CoreError::NotFound(format!(
                "matter {} not found",
                matter.name
            ))),
            AddCustodian::MatterClosed => Err(CoreError::Conflict(format!(
                "matter {} is closed; create a new matter to hold this user",
                matter.name
            ))),
        }
    }

    /// Release a custodian (a reason is required). Under the two-person
    /// rule the first call asks, and a second legal-hold admin's call
    /// releases.
    pub async fn release_custodian(
        &self,
        p: &Principal,
        req: CustodianRequest,
    ) -> Result<CustodianInfo> {
        let (org, user) = self.custodian_user(p, &req, "hold.release").await?;
        let reason = check_reason(&req.reason, true, "releasing a hold")?;
        let matter = name(&req.matter, "matter")?;
        let need = self.hold_settings().release_approvals.max(1) as usize;
        let at = self.compliance_late();
        let me = p.account().to_string();
        let current = self
            .meta
            .custodians_of(&org, &user)?
            .into_iter()
            .find(|c| c.matter == matter)
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "{org}/{user} is not a custodian of matter {matter}"
                ))
            })?;
        if !current.active() {
            return Err(CoreError::Conflict(format!(
                "{org}/{user} was released from matter {matter} already"
            )));
        }
        if current.approvals.iter().any(|s| s.by == me) {
            return Err(CoreError::Conflict(format!(
                "{me} asked for this release already; the two-person rule needs a second legal-hold admin to release {org}/{user}"
            )));
        }
        let releases = current.approvals.len() + 1 >= need;
        let action = if releases {
            "hold.release"
        } else {
            "hold.release_requested"
        };
        let d = self.draft(
            p,
            action,
            format!("user:{org}/{user}"),
            [
                ("matter", matter.to_string()),
                ("reason", reason.clone()),
                (
                    "approvals",
                    format!("{}/{need}", current.approvals.len() + 1),
                ),
            ],
        );
        let step = ReleaseStep {
            by: me.clone(),
            at,
            reason,
        };
        let (rec, changed) = self
            .meta
            .update_custodian(&org, &user, &matter, &d, |c| {
                if !c.active() || c.approvals.iter().any(|s| s.by == me) {
                    return None;
                }
                let mut n = c.clone();
                n.approvals.push(step.clone());
                if n.approvals.len() >= need {
                    n.released_at = Some(at);
                }
                Some(n)
            })?
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "{org}/{user} is not a custodian of matter {matter}"
                ))
            })?;
        if !changed {
            return Err(CoreError::Conflict(format!(
                "the release of {org}/{user} from {matter} changed meanwhile; look again (coffer admin hold custodian list)"
            )));
        }
        self.meta.durable().await?;
        tracing::info!(matter = %matter, org = %org, user = %user, by = %me, released = rec.released_at.is_some(), "custodian release");
        Ok(self.custodian_info(rec, self.compliance_now()))
    }

    /// Custodians (of one matter, or all), within `p`'s scope.
    pub async fn custodians(
        &self,
        p: &Principal,
        matter: Option<&str>,
    ) -> Result<Vec<CustodianInfo>> {
        self.require(p, Permission::ReadHolds, "hold.custodian.list")
            .await?;
        let m = matter.map(|m| name(m, "matter")).transpose()?;
        let tree = self.org_tree();
        let now = self.compliance_now();
        Ok(self
            .meta
            .custodians()?
            .into_iter()
            .filter(|c| m.as_ref().is_none_or(|m| &c.matter == m))
            .filter(|c| p.sees(&tree, &c.org))
            .map(|c| self.custodian_info(c, now))
            .collect())
    }

    /// The holds protecting user `org/user` at compliance time `now`:
    /// active ones, and released ones still in quarantine. A matter whose
    /// policy is gone counts as keeping everything.
    pub(crate) fn holds_on(&self, org: &Name, user: &Name, now: UnixMillis) -> Result<Vec<HoldOn>> {
        let q = self.hold_settings().release_quarantine.as_millis() as u64;
        let mut out = Vec::new();
        for c in self.meta.custodians_of(org, user)? {
            let quarantine_until = match c.released_at {
                None => None,
                Some(r) if r + q > now => Some(r + q),
                Some(_) => continue,
            };
            let keep = self
                .meta
                .matter(&c.matter)?
                .and_then(|m| self.meta.hold_policy(&m.policy).ok().flatten())
                .map_or(KeepRecord::All, |p| p.keep);
            out.push(HoldOn {
                matter: c.matter,
                keep,
                quarantine_until,
            });
        }
        Ok(out)
    }

    /// What the active holds on user `org/user` make of its devices'
    /// `keep_deleted` (seconds, `None` forever): the most preserving of their
    /// policies', and when the newest was placed — `None` without an active
    /// hold. Also the newest release, which pushes the org's value back.
    pub(crate) fn held_keep_deleted(&self, org: &Name, user: &Name) -> Result<HeldKeepDeleted> {
        let mut out = HeldKeepDeleted::default();
        for c in self.meta.custodians_of(org, user)? {
            match c.released_at {
                Some(r) => out.released_at = out.released_at.max(r),
                None => {
                    let policy = self
                        .meta
                        .matter(&c.matter)?
                        .and_then(|m| self.meta.hold_policy(&m.policy).ok().flatten());
                    // A matter whose policy is gone keeps everything.
                    let secs = policy.and_then(|p| p.keep_deleted);
                    let (keep, since, mut matters) =
                        out.held.take().unwrap_or((Some(0), 0, vec![]));
                    let keep = match (keep, secs) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    matters.push(c.matter.clone());
                    out.held = Some((keep, since.max(c.added_at), matters));
                }
            }
        }
        Ok(out)
    }

    /// Active (unreleased) holds on a user: what refuses deleting the
    /// user or purging their devices.
    pub(crate) fn active_matters(&self, org: &Name, user: &Name) -> Result<Vec<Name>> {
        Ok(self
            .meta
            .custodians_of(org, user)?
            .into_iter()
            .filter(|c| c.active())
            .map(|c| c.matter)
            .collect())
    }
}

/// The tiers a set of holds imposes on top of `org` (the stricter, tier by
/// tier), or `None` when one of them keeps everything.
pub(crate) fn held_tiers(holds: &[HoldOn], org: Tiers) -> Option<Tiers> {
    let mut t = org;
    for h in holds {
        match &h.keep {
            KeepRecord::All => return None,
            KeepRecord::Tiers {
                keep_all,
                daily,
                weekly,
                monthly,
            } => {
                t = t.stricter(Tiers {
                    keep_all: *keep_all,
                    daily: *daily,
                    weekly: *weekly,
                    monthly: *monthly,
                    min_age: 0,
                })
            }
        }
    }
    Some(t)
}
