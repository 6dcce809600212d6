//! Storage quotas: the `quotas` settings group, enforced on uploads.
//!
//! Bytes stored are counted as stored (after dedupe: a block an archive
//! already holds costs nothing). A device's usage is its archive's; a
//! user's is the sum of their devices'; an org's is its whole subtree's.
//! Every org on the way up from the device's org applies its
//! `quotas.org_bytes` to its own subtree; `user_bytes` and `device_bytes`
//! are those in effect for the device's org. The counts live in memory,
//! loaded once from the archive records and kept up to date by each stored
//! block; the effective quotas are cached per org until a setting or the
//! org tree changes.
//!
//! The check runs before a new block is written (and again with its real
//! size when the client sent no length), so concurrent uploads can pass a
//! quota by at most what they have in flight.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use coffer_meta::QuotaWarningRecord;
use coffer_types::wire::QuotaUsage;
use coffer_types::Name;

use crate::settings::{self, Group, OrgSettings};
use crate::{Coffer, CoreError, Result};

/// The quotas in effect for one org (0 = none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quotas {
    pub org_bytes: u64,
    pub user_bytes: u64,
    pub device_bytes: u64,
    pub warn_at: f64,
}

#[derive(Debug, Clone)]
struct Owner {
    device: Name,
    org: Name,
    user: Name,
    bytes: u64,
}

/// Bytes stored, by archive, user and org (direct: the org's own devices).
#[derive(Debug, Default)]
pub(crate) struct Usage {
    loaded: bool,
    archives: HashMap<Name, Owner>,
    users: HashMap<(Name, Name), u64>,
    orgs: HashMap<Name, u64>,
}

impl Usage {
    fn add(&mut self, archive: &Name, bytes: u64) {
        if let Some(o) = self.archives.get_mut(archive) {
            o.bytes += bytes;
            *self
                .users
                .entry((o.org.clone(), o.user.clone()))
                .or_default() += bytes;
            *self.orgs.entry(o.org.clone()).or_default() += bytes;
        }
    }

    fn sub(&mut self, archive: &Name, bytes: u64) {
        if let Some(o) = self.archives.get_mut(archive) {
            o.bytes = o.bytes.saturating_sub(bytes);
            let u = self
                .users
                .entry((o.org.clone(), o.user.clone()))
                .or_default();
            *u = u.saturating_sub(bytes);
            let g = self.orgs.entry(o.org.clone()).or_default();
            *g = g.saturating_sub(bytes);
        }
    }

    fn insert(&mut self, archive: Name, owner: Owner) {
        let b = owner.bytes;
        *self
            .users
            .entry((owner.org.clone(), owner.user.clone()))
            .or_default() += b;
        *self.orgs.entry(owner.org.clone()).or_default() += b;
        self.archives.insert(archive, owner);
    }
}

/// One quota an upload is measured against.
struct Scope {
    key: String,
    what: String,
    used: u64,
    quota: u64,
}

#[derive(Debug, Default)]
pub(crate) struct QuotaState {
    usage: Mutex<Usage>,
    /// Effective quotas by org, until a setting or the tree changes.
    cache: Mutex<HashMap<Name, Quotas>>,
    /// The scopes with a warning recorded (the `quota_warnings` tree, read
    /// once), so a block counted below every level costs no read.
    warned: Mutex<Option<HashSet<String>>>,
}

fn iec(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

impl Coffer {
    /// The usage counts, loaded from the archive records on first use.
    fn usage(&self) -> Result<MutexGuard<'_, Usage>> {
        let mut u = self.quota.usage.lock().unwrap_or_else(|e| e.into_inner());
        if !u.loaded {
            for d in self.meta.devices()? {
                let bytes = self.meta.archive(&d.archive)?.map_or(0, |a| a.bytes_stored);
                u.insert(
                    d.archive.clone(),
                    Owner {
                        device: d.id,
                        org: d.org,
                        user: d.user,
                        bytes,
                    },
                );
            }
            u.loaded = true;
        }
        Ok(u)
    }

    /// Count what every archive stores (once, at start).
    pub(crate) fn load_usage(&self) -> Result<()> {
        self.usage().map(drop)
    }

    /// The entry of `archive`, read from its records when the counts have
    /// not seen it yet (enrolled since they were loaded).
    fn owner(&self, u: &mut Usage, archive: &Name) -> Result<Option<Owner>> {
        if let Some(o) = u.archives.get(archive) {
            return Ok(Some(o.clone()));
        }
        let Some(d) = self.meta.device_of_archive(archive)? else {
            return Ok(None);
        };
        let bytes = self.meta.archive(archive)?.map_or(0, |a| a.bytes_stored);
        let o = Owner {
            device: d.id,
            org: d.org,
            user: d.user,
            bytes,
        };
        u.insert(archive.clone(), o.clone());
        Ok(Some(o))
    }

    /// Forget the cached effective quotas (a setting or the tree changed).
    pub(crate) fn quotas_changed(&self) {
        self.thresholds_changed();
        self.quota
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The quotas in effect for `org`.
    pub(crate) fn quotas_of(&self, org: &Name) -> Result<Quotas> {
        if let Some(q) = self
            .quota
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(org)
        {
            return Ok(*q);
        }
        let (chain, _) = self.settings_chain(org)?;
        let refs: Vec<(&Name, &OrgSettings)> = chain.iter().map(|(n, s)| (n, s)).collect();
        let v = settings::effective(Group::Quotas, &refs);
        let n = |k: &str| v.get(k).and_then(|e| e.value.as_u64()).unwrap_or(0);
        let q = Quotas {
            org_bytes: n("org_bytes"),
            user_bytes: n("user_bytes"),
            device_bytes: n("device_bytes"),
            warn_at: v
                .get("warn_at")
                .and_then(|e| e.value.as_f64())
                .unwrap_or(0.9),
        };
        self.quota
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(org.clone(), q);
        Ok(q)
    }

    /// Every quota that applies to a new block of `archive`, with its usage.
    fn scopes(&self, u: &Usage, o: &Owner) -> Result<Vec<Scope>> {
        let tree = self.org_tree();
        let mut out = Vec::new();
        let own = self.quotas_of(&o.org)?;
        out.push(Scope {
            key: format!("device:{}", o.device),
            what: format!("device {}", o.device),
            used: o.bytes,
            quota: own.device_bytes,
        });
        out.push(Scope {
            key: format!("user:{}/{}", o.org, o.user),
            what: format!("user {} (org {})", o.user, o.org),
            used: u
                .users
                .get(&(o.org.clone(), o.user.clone()))
                .copied()
                .unwrap_or(0),
            quota: own.user_bytes,
        });
        for a in tree.ancestors(&o.org) {
            let q = self.quotas_of(a)?;
            if q.org_bytes == 0 {
                continue;
            }
            let used = tree
                .subtree(a)
                .into_iter()
                .map(|s| u.orgs.get(s).copied().unwrap_or(0))
                .sum();
            out.push(Scope {
                key: format!("org:{a}"),
                what: format!("org {a} (with the orgs below it)"),
                used,
                quota: q.org_bytes,
            });
        }
        Ok(out)
    }

    /// Refuse a new block of `size` bytes for `archive` if it would pass a
    /// quota: `507 quota_exceeded` naming it.
    pub(crate) fn check_quota(&self, archive: &Name, size: u64) -> Result<()> {
        let mut u = self.usage()?;
        let Some(o) = self.owner(&mut u, archive)? else {
            return Ok(());
        };
        for s in self.scopes(&u, &o)? {
            if s.quota > 0 && s.used + size > s.quota {
                // A custodian on legal hold is never refused: the data a
                // hold preserves includes what the user backs up while it
                // lasts (the warning still goes out at `warn_at`).
                let held = !self.active_matters(&o.org, &o.user)?.is_empty();
                if held {
                    continue;
                }
                return Err(CoreError::QuotaExceeded(format!(
                    "the quota of {} is {} and {} of it is in use; this block of {} does not fit. \
                     Blocks already stored stay readable and can be committed; free space or \
                     raise the quota (quotas.{}_bytes)",
                    s.what,
                    size_exact(s.quota),
                    size_exact(s.used),
                    size_exact(size),
                    s.key.split(':').next().unwrap_or("org"),
                )));
            }
        }
        Ok(())
    }

    /// Blocks of `archive` totalling `size` bytes were destroyed.
    pub(crate) fn uncount_stored(&self, archive: &Name, size: u64) -> Result<()> {
        let mut u = self.usage()?;
        if u.archives.contains_key(archive) {
            u.sub(archive, size);
        }
        Ok(())
    }

    /// Count a new block of `archive`, and record a warning for each quota
    /// it brought to its warning level.
    pub(crate) fn count_stored(&self, archive: &Name, size: u64) -> Result<()> {
        let mut u = self.usage()?;
        if !u.archives.contains_key(archive) {
            // Read from the records, which hold this block already.
            self.owner(&mut u, archive)?;
        } else {
            u.add(archive, size);
        }
        let Some(o) = u.archives.get(archive).cloned() else {
            return Ok(());
        };
        let warn_at = self.quotas_of(&o.org)?.warn_at;
        let scopes = self.scopes(&u, &o)?;
        drop(u);
        let mut warned = self.quota.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.is_none() {
            *warned = Some(
                self.meta
                    .quota_warnings()?
                    .into_iter()
                    .map(|w| w.scope)
                    .collect(),
            );
        }
        let warned = warned.as_mut().expect("loaded above");
        for s in scopes {
            if s.quota == 0 || (s.used as f64) < warn_at * s.quota as f64 {
                // Below the level (the quota was raised or removed).
                if warned.remove(&s.key) {
                    self.meta.clear_quota_warning(&s.key)?;
                }
                continue;
            }
            if warned.contains(&s.key) {
                continue;
            }
            warned.insert(s.key.clone());
            let w = QuotaWarningRecord {
                scope: s.key.clone(),
                used: s.used,
                quota: s.quota,
                at: self.now(),
            };
            if self.meta.record_quota_warning(&w)? {
                tracing::warn!(
                    scope = %s.key,
                    used = s.used,
                    quota = s.quota,
                    "{} has reached {:.0} % of its quota ({} of {})",
                    s.what,
                    100.0 * s.used as f64 / s.quota as f64,
                    iec(s.used),
                    iec(s.quota)
                );
            }
        }
        Ok(())
    }

    /// `org`'s usage against its quota, and the warnings recorded in its
    /// subtree.
    pub(crate) fn quota_usage(&self, org: &Name) -> Result<QuotaUsage> {
        let tree = self.org_tree();
        let subtree = tree.subtree(org);
        // The devices of the subtree, from the counts in memory.
        let (bytes_stored, devices): (u64, HashSet<String>) = {
            let u = self.usage()?;
            (
                subtree
                    .iter()
                    .map(|s| u.orgs.get(*s).copied().unwrap_or(0))
                    .sum(),
                u.archives
                    .values()
                    .filter(|o| subtree.contains(&&o.org))
                    .map(|o| o.device.to_string())
                    .collect(),
            )
        };
        let q = self.quotas_of(org)?;
        let inside = |scope: &str| -> bool {
            let org_of = match scope.split_once(':') {
                Some(("org", o)) => Some(o.to_string()),
                Some(("user", ou)) => ou.split_once('/').map(|(o, _)| o.to_string()),
                _ => None,
            };
            org_of.is_some_and(|o| subtree.iter().any(|s| s.as_str() == o))
        };
        let mut warnings = Vec::new();
        for w in self.meta.quota_warnings()? {
            let device_inside = w
                .scope
                .strip_prefix("device:")
                .is_some_and(|id| devices.contains(id));
            if inside(&w.scope) || device_inside {
                warnings.push(coffer_types::wire::QuotaWarning {
                    scope: w.scope,
                    used: w.used,
                    quota: w.quota,
                    at: w.at,
                });
            }
        }
        Ok(QuotaUsage {
            bytes_stored,
            org_bytes: q.org_bytes,
            user_bytes: q.user_bytes,
            device_bytes: q.device_bytes,
            warnings,
        })
    }

    /// The `device_bytes` quota in effect for a device of `org` (0 = none).
    pub(crate) fn device_quota(&self, org: &Name) -> u64 {
        self.quotas_of(org).map_or(0, |q| q.device_bytes)
    }
}

/// A size for a refusal: exact bytes, and the IEC figure when it helps.
fn size_exact(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{} ({n} bytes)", iec(n))
    }
}
