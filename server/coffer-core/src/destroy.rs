//! The one gate that destroys data (DESIGN §3.6, research R1.3). Every
//! path that deletes something stored — retention expiry, a plugin's plan,
//! a cold-storage purge, the garbage collector's sweep and pack rewrite,
//! escrowed-key removal — asks [`Coffer::may_destroy`] *at the moment of
//! destruction* and destroys through [`Coffer::destroy`]. Nothing else in
//! the server calls `BlockStore::delete` or `BlockStore::delete_pack`
//! (`.ci/layering` checks it).
//!
//! The gate answers allow, or deny with a reason code; refusals are written
//! to the audit log (with the matters, when a hold refused). Holds beat
//! everything: no caller, role, flag or plugin makes the gate skip them.
//! What it checks, by kind:
//!
//! - **Backup**: the archive's user is not on hold (nor in a released
//!   hold's quarantine) — or every hold on it has a tiers policy that lets
//!   this backup go; it is not the newest complete backup (or a newer
//!   incomplete one); it is older than `retention.min_age`; and, for the
//!   built-in policy, no tier keeps it. Decided on the compliance clock,
//!   from the metadata as it is now (cached per batch only while the hold
//!   epoch and the archive's commit epoch stand still).
//! - **Block**: condemned by a sweep under the archive's current commit
//!   epoch (so no backup committed since), stored before the grace cutoff,
//!   and pinned by no session open or active since the cutoff.
//! - **Pack**: no block record points into it any more.
//! - **Escrowed key**: the operator put the org under enhanced security.
//!   Legal holds do not keep an escrowed key: a hold preserves backups and
//!   their blocks; enhanced security is the decision that no one but the
//!   passphrase holder can open the archive.

use std::collections::HashMap;

use coffer_meta::BlockRecord;
use coffer_storage::Location;
use coffer_types::{BlockId, Name, UnixMillis};

use crate::access::Principal;
use crate::holds::HoldOn;
use crate::retention::{Candidate, Keep};
use crate::{Coffer, Result};

/// Why a backup is being destroyed (what the gate checks besides the
/// protections every destruction honours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The built-in tiers: a backup a tier keeps is refused too.
    Tiers,
    /// A retention plugin's plan: the tiers do not apply, the protections
    /// do.
    Plugin,
    /// The purge of an archive whose cold-storage period ended: only holds
    /// protect (the newest backup goes with the archive).
    Purge,
}

/// Something the gate may destroy.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doomed<'a> {
    /// An archive's escrowed key (the sealed box, in the metadata).
    EscrowKey { archive: &'a Name },
    /// A committed backup's record and reference list.
    Backup {
        archive: &'a Name,
        backup: &'a Name,
        origin: Origin,
    },
    /// A block's record and bytes (`commits`: the archive's commit epoch the
    /// sweep condemned it under; `cutoff`: the grace cutoff).
    Block {
        archive: &'a Name,
        id: &'a BlockId,
        commits: u64,
        cutoff: UnixMillis,
    },
    /// A whole pack file, after its live records were copied out
    /// (`records`: the ids its headers hold, read just before).
    Pack {
        archive: &'a Name,
        pack: u64,
        records: &'a [BlockId],
    },
}

impl Doomed<'_> {
    pub(crate) fn target(&self) -> String {
        match self {
            Doomed::EscrowKey { archive } => format!("archive:{archive}"),
            Doomed::Backup {
                archive, backup, ..
            } => format!("backup:{archive}/{backup}"),
            Doomed::Block { archive, id, .. } => format!("block:{archive}/{id}"),
            Doomed::Pack { archive, pack, .. } => format!("pack:{archive}/{pack:016x}"),
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Doomed::EscrowKey { .. } => "escrow.destroy",
            Doomed::Backup { .. } => "backup.destroy",
            Doomed::Block { .. } => "block.destroy",
            Doomed::Pack { .. } => "pack.destroy",
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    Deny {
        /// A stable code: `hold_active`, `hold_quarantine`, `newest_backup`,
        /// `min_age`, `retained`, `unknown`, `not_condemned`,
        /// `archive_changed`, `grace`, `pinned`, `live_records`.
        code: &'static str,
        why: String,
        /// The matters, when a hold refused.
        matters: Vec<Name>,
    },
}

impl Verdict {
    fn deny(code: &'static str, why: impl Into<String>) -> Self {
        Verdict::Deny {
            code,
            why: why.into(),
            matters: Vec::new(),
        }
    }
}

/// What the gate knows of an archive for one batch, valid while the hold
/// epoch and the archive's commit epoch are the ones it was read at.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveView {
    pub hold_epoch: u64,
    pub commits: u64,
    pub holds: Vec<HoldOn>,
    /// Backup → the rule that protects it whatever the origin (`hold:…`,
    /// `quarantine:…`, `newest`, `min_age`), and the tier that keeps it
    /// under the built-in policy.
    pub protected: HashMap<Name, String>,
    pub tier_keeps: HashMap<Name, Keep>,
    pub backups: Vec<Candidate>,
    pub ids: std::collections::HashSet<Name>,
    pub now: UnixMillis,
}

/// A batch's cache of archive views.
#[derive(Debug, Default)]
pub(crate) struct GateCtx {
    views: HashMap<Name, ArchiveView>,
    /// Sessions whose pins protect blocks, per archive (for one sweep).
    live_sessions: HashMap<Name, Vec<Name>>,
}

impl Coffer {
    /// The view of `archive` the gate decides on now (cached in `ctx` while
    /// nothing it depends on moved).
    pub(crate) fn archive_view<'c>(
        &self,
        ctx: &'c mut GateCtx,
        archive: &Name,
    ) -> Result<&'c ArchiveView> {
        let hold_epoch = self.meta.hold_epoch()?;
        let commits = self.meta.epochs(archive)?.commits;
        let fresh = ctx
            .views
            .get(archive)
            .is_some_and(|v| v.hold_epoch == hold_epoch && v.commits == commits);
        if !fresh {
            let v = self.read_archive_view(archive, hold_epoch, commits)?;
            ctx.views.insert(archive.clone(), v);
        }
        Ok(&ctx.views[archive])
    }

    fn read_archive_view(
        &self,
        archive: &Name,
        hold_epoch: u64,
        commits: u64,
    ) -> Result<ArchiveView> {
        let now = self.compliance_now();
        let device = self.meta.device_of_archive(archive)?;
        let holds = match &device {
            Some(d) => self.holds_on(&d.org, &d.user, now)?,
            None => Vec::new(),
        };
        let org_tiers = match &device {
            Some(d) => self.retention_tiers(&d.org)?,
            None => crate::retention::Tiers::default(),
        };
        let backups: Vec<Candidate> = self
            .meta
            .backups(archive)?
            .into_iter()
            .map(|b| Candidate {
                id: b.id,
                committed_at: b.committed_at,
                complete: b.stats.percent >= 100.0,
            })
            .collect();
        let mut protected = HashMap::new();
        let mut tier_keeps = HashMap::new();
        // The protections: newest and min_age, whatever the origin.
        let floor = crate::retention::Tiers {
            keep_all: 0,
            daily: 0,
            weekly: 0,
            monthly: Some(0),
            min_age: org_tiers.min_age,
        };
        for (b, k) in backups
            .iter()
            .zip(crate::retention::plan(&backups, &floor, now))
        {
            if let Some(k) = k {
                protected.insert(b.id.clone(), k.as_str().to_string());
            }
        }
        for (b, k) in backups
            .iter()
            .zip(crate::retention::plan(&backups, &org_tiers, now))
        {
            if let Some(k) = k {
                tier_keeps.insert(b.id.clone(), k);
            }
        }
        // Holds: everything, or what the stricter tiers keep.
        if !holds.is_empty() {
            let label = holds
                .iter()
                .map(HoldOn::label)
                .collect::<Vec<_>>()
                .join(",");
            match crate::holds::held_tiers(&holds, org_tiers) {
                // A hold names itself, even where another rule also keeps
                // the backup: a refusal because of a hold names the matter.
                None => {
                    for b in &backups {
                        protected.insert(b.id.clone(), label.clone());
                    }
                }
                Some(t) => {
                    for (b, k) in backups
                        .iter()
                        .zip(crate::retention::plan(&backups, &t, now))
                    {
                        if k.is_some() {
                            protected.insert(b.id.clone(), label.clone());
                        }
                    }
                }
            }
        }
        Ok(ArchiveView {
            ids: backups.iter().map(|b| b.id.clone()).collect(),
            hold_epoch,
            commits,
            holds,
            protected,
            tier_keeps,
            backups,
            now,
        })
    }

    /// The gate: may `what` be destroyed now?
    pub(crate) fn may_destroy(&self, ctx: &mut GateCtx, what: &Doomed<'_>) -> Result<Verdict> {
        match *what {
            Doomed::EscrowKey { .. } => Ok(Verdict::Allow),
            Doomed::Backup {
                archive,
                backup,
                origin,
            } => {
                let v = self.archive_view(ctx, archive)?;
                if !v.ids.contains(backup) {
                    return Ok(Verdict::deny(
                        "unknown",
                        format!("archive {archive} has no backup {backup}"),
                    ));
                }
                let matters: Vec<Name> = v.holds.iter().map(|h| h.matter.clone()).collect();
                let held = |why: &str| {
                    let quarantine = v.holds.iter().all(|h| h.quarantine_until.is_some());
                    Verdict::Deny {
                        code: if quarantine {
                            "hold_quarantine"
                        } else {
                            "hold_active"
                        },
                        why: format!("backup {backup} is protected by {why}"),
                        matters: matters.clone(),
                    }
                };
                if origin == Origin::Purge {
                    // A purge takes the whole archive: only holds keep it.
                    if !v.holds.is_empty() {
                        let label = v
                            .holds
                            .iter()
                            .map(HoldOn::label)
                            .collect::<Vec<_>>()
                            .join(",");
                        return Ok(held(&label));
                    }
                    return Ok(Verdict::Allow);
                }
                if let Some(rule) = v.protected.get(backup) {
                    return Ok(
                        if rule.starts_with("hold:") || rule.starts_with("quarantine:") {
                            held(rule)
                        } else if rule == "newest" {
                            Verdict::deny(
                            "newest_backup",
                            format!("backup {backup} is the archive's newest backup, which is always kept"),
                        )
                        } else {
                            Verdict::deny(
                                "min_age",
                                format!("backup {backup} is younger than retention.min_age"),
                            )
                        },
                    );
                }
                if origin == Origin::Tiers {
                    if let Some(k) = v.tier_keeps.get(backup) {
                        return Ok(Verdict::deny(
                            "retained",
                            format!("backup {backup} is kept by the {} tier", k.as_str()),
                        ));
                    }
                }
                Ok(Verdict::Allow)
            }
            Doomed::Block {
                archive,
                id,
                commits,
                cutoff,
            } => {
                if !self.meta.is_condemned(archive, id)? {
                    return Ok(Verdict::deny(
                        "not_condemned",
                        format!("block {id} was stored again or never condemned"),
                    ));
                }
                if self.meta.epochs(archive)?.commits != commits {
                    return Ok(Verdict::deny(
                        "archive_changed",
                        format!("archive {archive} committed a backup since the sweep began"),
                    ));
                }
                match self.meta.block(archive, id)? {
                    Some(BlockRecord { stored_at, .. }) if stored_at >= cutoff => {
                        return Ok(Verdict::deny(
                            "grace",
                            format!("block {id} was stored within the collection grace"),
                        ))
                    }
                    _ => {}
                }
                if let Some(s) = self.pinned_by(ctx, archive, id, cutoff)? {
                    return Ok(Verdict::deny(
                        "pinned",
                        format!("block {id} is pinned by session {s}"),
                    ));
                }
                Ok(Verdict::Allow)
            }
            Doomed::Pack {
                archive,
                pack,
                records,
            } => {
                // In key order: neighbouring probes share the index's pages
                // (a pack's records are in upload order, which is random).
                let mut ids: Vec<&BlockId> = records.iter().collect();
                ids.sort_unstable();
                for id in ids {
                    if let Some(rec) = self.meta.block(archive, id)? {
                        if matches!(Location::decode(&rec.location), Some(Location::Packed { pack: p, .. }) if p == pack)
                        {
                            return Ok(Verdict::deny(
                                "live_records",
                                format!("block {id} is still read from pack {pack:016x}"),
                            ));
                        }
                    }
                }
                Ok(Verdict::Allow)
            }
        }
    }

    /// Write the audit entry of a refusal.
    pub(crate) fn audit_refused(
        &self,
        p: &Principal,
        what: &Doomed<'_>,
        verdict: &Verdict,
        context: &str,
    ) -> Result<()> {
        if let Verdict::Deny { code, why, matters } = verdict {
            let mut d = self.draft(
                p,
                what.action(),
                what.target(),
                [
                    ("code", code.to_string()),
                    ("reason", why.clone()),
                    ("by", context.to_string()),
                ],
            );
            if !matters.is_empty() {
                d.details.insert(
                    "matters".into(),
                    matters
                        .iter()
                        .map(Name::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            d.outcome = "refused".into();
            self.meta.audit_append(&d)?;
            tracing::info!(target = %what.target(), code, context, "destruction refused: {why}");
        }
        Ok(())
    }

    /// Destroy `what` as `p`, for `reason`, if the gate allows it now: the
    /// verdict, with the destruction done (and its audit entry written in
    /// its transaction, for records) when allowed, and the refusal audited
    /// when not. Blocks and packs are journaled and destroyed by the
    /// collector through [`Coffer::destroy_bytes_many`].
    pub(crate) fn destroy(
        &self,
        p: &Principal,
        ctx: &mut GateCtx,
        what: Doomed<'_>,
        reason: &str,
    ) -> Result<(Verdict, bool)> {
        let verdict = self.may_destroy(ctx, &what)?;
        if verdict != Verdict::Allow {
            self.audit_refused(p, &what, &verdict, reason)?;
            return Ok((verdict, false));
        }
        let draft = self.draft(p, what.action(), what.target(), [("reason", reason.into())]);
        let done = match what {
            Doomed::EscrowKey { archive } => self.meta.delete_escrow(archive, &draft)?,
            Doomed::Backup {
                archive, backup, ..
            } => self.meta.destroy_backup(archive, backup, &draft)?.is_some(),
            Doomed::Block {
                archive,
                id,
                commits,
                cutoff,
            } => self
                .meta
                .destroy_block_records(archive, &[*id], commits, cutoff)?
                .into_iter()
                .all(|r| r.is_ok()),
            Doomed::Pack { .. } => true,
        };
        if done && matches!(what, Doomed::EscrowKey { .. } | Doomed::Backup { .. }) {
            tracing::info!(target = %what.target(), reason, by = %p.account(), "destroyed: {}", what.action());
        }
        Ok((Verdict::Allow, done))
    }

    /// The session whose pin keeps `id` from a sweep with `cutoff`, if any
    /// (the sessions that count are read once per batch).
    fn pinned_by(
        &self,
        ctx: &mut GateCtx,
        archive: &Name,
        id: &BlockId,
        cutoff: UnixMillis,
    ) -> Result<Option<Name>> {
        if !ctx.live_sessions.contains_key(archive) {
            let live = self
                .meta
                .sessions(archive)?
                .into_iter()
                .filter(|s| crate::gc::pins_protect(s, cutoff))
                .map(|s| s.id)
                .collect();
            ctx.live_sessions.insert(archive.clone(), live);
        }
        for s in &ctx.live_sessions[archive] {
            if self.meta.pinned(archive, s, id)? {
                return Ok(Some(s.clone()));
            }
        }
        Ok(None)
    }

    /// The gate for a batch of one archive's condemned blocks (the sweep):
    /// per block, the pins are checked here and the rest — still condemned,
    /// past the grace, no commit since the mark — inside the one
    /// transaction that destroys the records and journals their bytes.
    /// Refusals are audited per block. Per block: the record destroyed, or
    /// `None`.
    pub(crate) fn destroy_blocks(
        &self,
        p: &Principal,
        ctx: &mut GateCtx,
        archive: &Name,
        ids: &[BlockId],
        commits: u64,
        cutoff: UnixMillis,
    ) -> Result<Vec<Option<BlockRecord>>> {
        let mut out: Vec<Option<BlockRecord>> = vec![None; ids.len()];
        let mut unpinned = Vec::with_capacity(ids.len());
        let mut at = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            match self.pinned_by(ctx, archive, id, cutoff)? {
                Some(s) => {
                    let what = Doomed::Block {
                        archive,
                        id,
                        commits,
                        cutoff,
                    };
                    let v = Verdict::deny("pinned", format!("block {id} is pinned by session {s}"));
                    self.audit_refused(p, &what, &v, "garbage collection")?;
                }
                None => {
                    unpinned.push(*id);
                    at.push(i);
                }
            }
        }
        let results = self
            .meta
            .destroy_block_records(archive, &unpinned, commits, cutoff)?;
        for ((i, id), r) in at.into_iter().zip(&unpinned).zip(results) {
            match r {
                Ok(rec) => out[i] = Some(rec),
                Err(code) => {
                    let what = Doomed::Block {
                        archive,
                        id,
                        commits,
                        cutoff,
                    };
                    let v = Verdict::deny(code, format!("block {id}: {code}"));
                    self.audit_refused(p, &what, &v, "garbage collection")?;
                }
            }
        }
        Ok(out)
    }

    /// Delete the bytes of blocks of `archive` whose records the gate
    /// destroyed (their journal entries durable), then clear the entries of
    /// those deleted. Each failed delete is tried again a few times; one
    /// that still fails keeps its entry, for the next run or start. Returns
    /// how many still failed. The only caller of `BlockStore::delete`.
    pub(crate) async fn destroy_bytes_many(
        &self,
        archive: &Name,
        blocks: &[(BlockId, Vec<u8>)],
    ) -> Result<u64> {
        let mut left: Vec<(BlockId, Location)> = blocks
            .iter()
            .map(|(id, loc)| (*id, Location::decode(loc).unwrap_or(Location::Object)))
            .collect();
        let mut tries = 0;
        loop {
            let results = self.storage.delete(archive.as_str(), &left).await;
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for (b, r) in left.into_iter().zip(results) {
                match r {
                    Ok(()) => done.push(b.0),
                    Err(e) => failed.push((b, e)),
                }
            }
            self.meta.journal_done_many(archive, &done)?;
            if failed.is_empty() {
                return Ok(0);
            }
            if tries == 4 {
                for ((id, _), e) in &failed {
                    tracing::warn!(archive = %archive, block = %id, error = %e, "a block's bytes could not be deleted yet; its journal entry stays");
                }
                return Ok(failed.len() as u64);
            }
            tries += 1;
            tracing::warn!(archive = %archive, blocks = failed.len(), error = %failed[0].1, "block deletes failed; retrying");
            tokio::time::sleep(std::time::Duration::from_millis(100 << tries)).await;
            left = failed.into_iter().map(|(b, _)| b).collect();
        }
    }

    /// Delete a pack the gate allowed. The only caller of
    /// `BlockStore::delete_pack`.
    pub(crate) async fn destroy_pack_bytes(&self, archive: &Name, pack: u64) -> Result<()> {
        self.storage.delete_pack(archive.as_str(), pack).await?;
        self.meta.pack_journal_done(archive, pack)?;
        Ok(())
    }
}
