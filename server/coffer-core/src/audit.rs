//! Reading the audit log: listing with filters and pages, the whole log as
//! JSON lines, and verification of the hash chain. Only unscoped roles that
//! hold `read-audit` (admin, legal-hold-admin) read it. Entries are written
//! by the operations themselves, in the same write as their change.

use coffer_meta::{AuditBreak, AuditFilter, AuditRecord};
use coffer_types::wire::{AuditEntry, AuditList, AuditVerify};
use coffer_types::UnixMillis;

use crate::access::{Permission, Principal};
use crate::{Coffer, Result};

/// The most entries one page holds.
pub const AUDIT_PAGE_MAX: usize = 1000;

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<UnixMillis>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

fn entry(r: AuditRecord) -> AuditEntry {
    AuditEntry {
        seq: r.seq,
        at: r.at,
        actor: r.actor,
        role: r.role,
        action: r.action,
        target: r.target,
        outcome: r.outcome,
        details: r.details,
        prev: r.prev,
        hash: r.hash,
    }
}

impl Coffer {
    /// One page of entries matching `q`, oldest first.
    pub async fn audit_list(&self, p: &Principal, q: AuditQuery) -> Result<AuditList> {
        self.require(p, Permission::ReadAudit, "reading the audit log")
            .await?;
        let limit = q.limit.unwrap_or(100).clamp(1, AUDIT_PAGE_MAX);
        let entries: Vec<AuditEntry> = self
            .meta
            .audit_list(&AuditFilter {
                after: q.after,
                since: q.since,
                actor: q.actor,
                target: q.target,
                limit,
            })?
            .into_iter()
            .map(entry)
            .collect();
        let next_after = (entries.len() == limit).then(|| entries[entries.len() - 1].seq);
        Ok(AuditList {
            entries,
            next_after,
        })
    }

    /// Entries after `after`, at most `limit` of them, unfiltered: the pages
    /// of an export.
    pub async fn audit_page(
        &self,
        p: &Principal,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.require(p, Permission::ReadAudit, "exporting the audit log")
            .await?;
        Ok(self
            .meta
            .audit_list(&AuditFilter {
                after: Some(after),
                limit: limit.clamp(1, AUDIT_PAGE_MAX),
                ..Default::default()
            })?
            .into_iter()
            .map(entry)
            .collect())
    }

    /// Recompute the chain from the first entry; name the first entry that
    /// does not match. Reads the whole log on the blocking pool.
    pub async fn audit_verify(&self, p: &Principal) -> Result<AuditVerify> {
        self.require(p, Permission::ReadAudit, "verifying the audit log")
            .await?;
        let v = self
            .meta_blocking("verify the audit log", |m| Ok(m.audit_verify()?))
            .await?;
        let (first_bad_seq, problem) = match v.first_break {
            None => (None, None),
            Some(AuditBreak::Edited { seq }) => (
                Some(seq),
                Some(format!("entry {seq} was changed: its fields do not give its hash")),
            ),
            Some(AuditBreak::Unlinked { seq }) => (
                Some(seq),
                Some(format!(
                    "entry {seq} does not follow the entry before it: an entry was replaced or rewritten"
                )),
            ),
            Some(AuditBreak::Gap { expected, found }) => (
                Some(expected),
                Some(format!(
                    "entry {expected} is missing: the next entry found is {found}"
                )),
            ),
            Some(AuditBreak::Unreadable { seq }) => (
                Some(seq),
                Some(format!("entry {seq} cannot be read as an audit entry")),
            ),
            Some(AuditBreak::Truncated { head_seq, last_seq }) => (
                Some(last_seq + 1),
                Some(format!(
                    "the log ends at entry {last_seq} but {head_seq} were written: entries were removed from its end"
                )),
            ),
        };
        Ok(AuditVerify {
            ok: first_bad_seq.is_none(),
            entries: v.entries,
            first_bad_seq,
            problem,
        })
    }
}
