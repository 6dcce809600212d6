//! Legal hold: preservation policies, matters and their custodians, and the
//! hold epoch that a destruction planned before a hold change re-checks.
//!
//! Every change is written with its audit entries in one transaction and
//! moves the epoch, so a destruction that compares the epoch it planned
//! under with the stored one never acts on a stale view of the holds.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::audit::{append_in, AuditDraft};
use crate::engine::{enc, engine, get, key, prefix, scan, tx_err, tx_get, TxResult};
use crate::{MetaStore, Result};

/// What a preservation policy keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "keep")]
pub enum KeepRecord {
    /// Every backup, for as long as the hold lasts.
    All,
    /// Version tiers (seconds), each at least the org's (the stricter of
    /// the two is applied tier by tier).
    Tiers {
        keep_all: u64,
        daily: u64,
        weekly: u64,
        /// `None`: one a month forever.
        monthly: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: Name,
    #[serde(flatten)]
    pub keep: KeepRecord,
    /// How long the custodians' agents keep files gone from their backup
    /// selection (seconds; `None`, the default, forever): pushed to their
    /// devices as `device_defaults.keep_deleted`, the stricter of it and
    /// the org's.
    #[serde(default)]
    pub keep_deleted: Option<u64>,
    pub created_by: String,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatterStatus {
    Active,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatterRecord {
    pub name: Name,
    pub description: String,
    pub policy: Name,
    pub status: MatterStatus,
    pub created_by: String,
    pub created_at: UnixMillis,
    pub closed_by: Option<String>,
    pub closed_at: Option<UnixMillis>,
    pub close_reason: Option<String>,
}

/// A step of a custodian's release: who asked or approved, when, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStep {
    pub by: String,
    pub at: UnixMillis,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodianRecord {
    pub matter: Name,
    pub org: Name,
    pub user: Name,
    pub added_by: String,
    pub added_at: UnixMillis,
    pub reason: String,
    /// Release requests and approvals so far (the two-person rule), empty
    /// while no release was asked for.
    #[serde(default)]
    pub approvals: Vec<ReleaseStep>,
    /// When the release took effect (compliance time); the hold's
    /// quarantine runs from here.
    pub released_at: Option<UnixMillis>,
}

impl CustodianRecord {
    pub fn active(&self) -> bool {
        self.released_at.is_none()
    }
}

/// What adding a custodian did.
#[derive(Debug, Clone, PartialEq)]
pub enum AddCustodian {
    Added(CustodianRecord),
    /// The user is already an active custodian of the matter.
    AlreadyHeld(CustodianRecord),
    NoMatter,
    MatterClosed,
}

/// What a policy-or-matter creation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    Exists,
    /// A matter's policy does not exist.
    NoPolicy,
}

/// The custodian key: `org \0 user \0 matter`, so one prefix scan finds a
/// user's holds.
fn custodian_key(org: &Name, user: &Name, matter: &Name) -> Vec<u8> {
    key(&[
        org.as_str().as_bytes(),
        user.as_str().as_bytes(),
        matter.as_str().as_bytes(),
    ])
}

const EPOCH_KEY: &[u8] = b"holds.epoch";

fn bump_epoch(meta: &sled::transaction::TransactionalTree) -> TxResult<()> {
    let e = meta
        .get(EPOCH_KEY)?
        .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
        .unwrap_or(0);
    meta.insert(EPOCH_KEY, &(e + 1).to_be_bytes())?;
    Ok(())
}

impl MetaStore {
    /// Moves with every change of a hold (placement, release, approval,
    /// matter close).
    pub fn hold_epoch(&self) -> Result<u64> {
        Ok(self
            .t
            .meta
            .get(EPOCH_KEY)
            .map_err(engine("read the hold epoch"))?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0))
    }

    pub fn create_hold_policy(&self, rec: &PolicyRecord, audit: &AuditDraft) -> Result<Created> {
        let t = &self.t;
        let k = rec.name.as_str().as_bytes();
        (&t.hold_policies, &t.meta, &t.audit)
            .transaction(|(policies, meta, log)| {
                if policies.get(k)?.is_some() {
                    return Ok(Created::Exists);
                }
                policies.insert(k, enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(Created::Created)
            })
            .map_err(tx_err("create a preservation policy"))
    }

    pub fn hold_policies(&self) -> Result<Vec<PolicyRecord>> {
        scan(&self.t.hold_policies, &[], "preservation policy")
    }

    pub fn hold_policy(&self, name: &Name) -> Result<Option<PolicyRecord>> {
        get(
            &self.t.hold_policies,
            name.as_str().as_bytes(),
            "preservation policy",
        )
    }

    pub fn create_matter(&self, rec: &MatterRecord, audit: &AuditDraft) -> Result<Created> {
        let t = &self.t;
        let k = rec.name.as_str().as_bytes();
        let pk = rec.policy.as_str().as_bytes();
        (&t.hold_matters, &t.hold_policies, &t.meta, &t.audit)
            .transaction(|(matters, policies, meta, log)| {
                if matters.get(k)?.is_some() {
                    return Ok(Created::Exists);
                }
                if policies.get(pk)?.is_none() {
                    return Ok(Created::NoPolicy);
                }
                matters.insert(k, enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(Created::Created)
            })
            .map_err(tx_err("create a matter"))
    }

    pub fn matters(&self) -> Result<Vec<MatterRecord>> {
        scan(&self.t.hold_matters, &[], "matter")
    }

    pub fn matter(&self, name: &Name) -> Result<Option<MatterRecord>> {
        get(&self.t.hold_matters, name.as_str().as_bytes(), "matter")
    }

    /// Place `rec.user` on hold under `rec.matter` (active matters only).
    pub fn add_custodian(&self, rec: &CustodianRecord, audit: &AuditDraft) -> Result<AddCustodian> {
        let t = &self.t;
        let ck = custodian_key(&rec.org, &rec.user, &rec.matter);
        let mk = rec.matter.as_str().as_bytes();
        (&t.hold_matters, &t.hold_custodians, &t.meta, &t.audit)
            .transaction(|(matters, custodians, meta, log)| {
                let Some(m) = tx_get::<MatterRecord>(matters, mk, "matter")? else {
                    return Ok(AddCustodian::NoMatter);
                };
                if m.status == MatterStatus::Closed {
                    return Ok(AddCustodian::MatterClosed);
                }
                if let Some(old) = tx_get::<CustodianRecord>(custodians, &ck, "custodian")? {
                    if old.active() {
                        return Ok(AddCustodian::AlreadyHeld(old));
                    }
                }
                custodians.insert(ck.as_slice(), enc(rec))?;
                bump_epoch(meta)?;
                append_in(meta, log, audit)?;
                Ok(AddCustodian::Added(rec.clone()))
            })
            .map_err(tx_err("add a custodian"))
    }

    /// Change one custodian record with `f` (which sees the current record
    /// and returns the new one, or `None` to leave it as it is), with its
    /// audit entry, moving the hold epoch. `None` if there is no such
    /// custodian; otherwise the record as it stands after the call and
    /// whether `f` changed it.
    pub fn update_custodian<F>(
        &self,
        org: &Name,
        user: &Name,
        matter: &Name,
        audit: &AuditDraft,
        f: F,
    ) -> Result<Option<(CustodianRecord, bool)>>
    where
        F: Fn(&CustodianRecord) -> Option<CustodianRecord>,
    {
        let t = &self.t;
        let ck = custodian_key(org, user, matter);
        (&t.hold_custodians, &t.meta, &t.audit)
            .transaction(|(custodians, meta, log)| {
                let Some(old) = tx_get::<CustodianRecord>(custodians, &ck, "custodian")? else {
                    return Ok(None);
                };
                let Some(new) = f(&old) else {
                    return Ok(Some((old, false)));
                };
                custodians.insert(ck.as_slice(), enc(&new))?;
                bump_epoch(meta)?;
                append_in(meta, log, audit)?;
                Ok(Some((new, true)))
            })
            .map_err(tx_err("change a custodian"))
    }

    /// Close a matter and release every active custodian of it at `at`,
    /// writing `audit` for the close and `released(c)` for each release, all
    /// in one transaction. `None` if there is no such matter; the matter
    /// as it was when it was closed before.
    pub fn close_matter(
        &self,
        name: &Name,
        closed: &MatterRecord,
        at: UnixMillis,
        audit: &AuditDraft,
        released: &dyn Fn(&CustodianRecord) -> AuditDraft,
    ) -> Result<Option<(MatterRecord, Vec<CustodianRecord>)>> {
        let t = &self.t;
        let mk = name.as_str().as_bytes();
        // Custodians are read first (a scan cannot run inside a
        // transaction) and each is compared again inside it.
        let listed: Vec<CustodianRecord> = self
            .custodians()?
            .into_iter()
            .filter(|c| &c.matter == name && c.active())
            .collect();
        (&t.hold_matters, &t.hold_custodians, &t.meta, &t.audit)
            .transaction(|(matters, custodians, meta, log)| {
                let Some(m) = tx_get::<MatterRecord>(matters, mk, "matter")? else {
                    return Ok(None);
                };
                if m.status == MatterStatus::Closed {
                    return Ok(Some((m, Vec::new())));
                }
                matters.insert(mk, enc(closed))?;
                append_in(meta, log, audit)?;
                let mut out = Vec::new();
                for c in &listed {
                    let ck = custodian_key(&c.org, &c.user, &c.matter);
                    let Some(mut cur) = tx_get::<CustodianRecord>(custodians, &ck, "custodian")?
                    else {
                        continue;
                    };
                    if !cur.active() {
                        continue;
                    }
                    cur.released_at = Some(at);
                    custodians.insert(ck.as_slice(), enc(&cur))?;
                    append_in(meta, log, &released(&cur))?;
                    out.push(cur);
                }
                bump_epoch(meta)?;
                Ok(Some((closed.clone(), out)))
            })
            .map_err(tx_err("close a matter"))
    }

    /// Every custodian record, active or released.
    pub fn custodians(&self) -> Result<Vec<CustodianRecord>> {
        scan(&self.t.hold_custodians, &[], "custodian")
    }

    /// The custodian records of one user (every matter, active or
    /// released).
    pub fn custodians_of(&self, org: &Name, user: &Name) -> Result<Vec<CustodianRecord>> {
        scan(
            &self.t.hold_custodians,
            &prefix(&[org.as_str().as_bytes(), user.as_str().as_bytes()]),
            "custodian",
        )
    }
}
