//! The audit log: an append-only, hash-chained list of admin changes and
//! refusals.
//!
//! Each entry carries the blake3 of the entry before it (`prev`) and its own
//! hash over every other field, so editing, removing or reordering an entry
//! in the database breaks the chain at that entry. An entry is written in the
//! same transaction as the change it records ([`append_in`] runs inside the
//! aggregate's transaction), so the change and its entry become durable
//! together or not at all. The chain's head (last sequence number and hash)
//! lives in the `meta` tree and moves in that same transaction.

use std::collections::BTreeMap;

use coffer_types::UnixMillis;
use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;
use sled::Transactional;

use crate::engine::{dec, enc, engine, tx_err, tx_get, TxResult};
use crate::{MetaStore, Result};

const HEAD_KEY: &[u8] = b"audit_head";

/// What the caller knows of an entry; the store adds the sequence number and
/// the hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub at: UnixMillis,
    /// Who: an account name, or `system`.
    pub actor: String,
    /// The actor's role, when it is an account.
    pub role: Option<String>,
    /// What, e.g. `org.create`.
    pub action: String,
    /// On what, e.g. `org:acme`.
    pub target: String,
    /// `ok`, or `refused` (with the reason in the details).
    pub outcome: String,
    pub details: BTreeMap<String, String>,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: UnixMillis,
    pub actor: String,
    #[serde(default)]
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// blake3 of the previous entry (all zeros for the first), hex.
    pub prev: String,
    /// blake3 of this entry's other fields, hex.
    pub hash: String,
}

/// The fields an entry's hash covers, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at: UnixMillis,
    actor: &'a str,
    role: &'a Option<String>,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    details: &'a BTreeMap<String, String>,
    prev: &'a str,
}

impl AuditRecord {
    /// The hash this entry's fields give (what `hash` must say).
    pub fn computed_hash(&self) -> String {
        let h = Hashed {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            role: &self.role,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            details: &self.details,
            prev: &self.prev,
        };
        blake3::hash(&enc(&h)).to_hex().to_string()
    }
}

#[derive(Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

fn zero_hash() -> String {
    "0".repeat(64)
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Append `draft` to the log inside a transaction over the `meta` and
/// `audit` trees (the caller's transaction, which makes the change).
pub(crate) fn append_in(
    meta: &TransactionalTree,
    audit: &TransactionalTree,
    draft: &AuditDraft,
) -> TxResult<AuditRecord> {
    let head: Head = tx_get(meta, HEAD_KEY, "audit head")?.unwrap_or(Head {
        seq: 0,
        hash: zero_hash(),
    });
    let mut rec = AuditRecord {
        seq: head.seq + 1,
        at: draft.at,
        actor: draft.actor.clone(),
        role: draft.role.clone(),
        action: draft.action.clone(),
        target: draft.target.clone(),
        outcome: draft.outcome.clone(),
        details: draft.details.clone(),
        prev: head.hash,
        hash: String::new(),
    };
    rec.hash = rec.computed_hash();
    audit.insert(&seq_key(rec.seq)[..], enc(&rec))?;
    meta.insert(
        HEAD_KEY,
        enc(&Head {
            seq: rec.seq,
            hash: rec.hash.clone(),
        }),
    )?;
    Ok(rec)
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries after this sequence number (for paging).
    pub after: Option<u64>,
    /// Only entries at or after this time.
    pub since: Option<UnixMillis>,
    pub actor: Option<String>,
    /// Entries whose target is exactly this; a value ending in `:` matches
    /// every target of that kind (`device:` finds every device's entries).
    pub target: Option<String>,
    pub limit: usize,
}

impl AuditFilter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.since.is_none_or(|s| r.at >= s)
            && self.actor.as_ref().is_none_or(|a| &r.actor == a)
            && self.target.as_ref().is_none_or(|t| {
                r.target == *t || (t.ends_with(':') && r.target.starts_with(t.as_str()))
            })
    }
}

/// Where verification of the chain stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditBreak {
    /// The entry's fields do not give its stored hash (it was edited).
    Edited { seq: u64 },
    /// The entry's `prev` is not the hash of the entry before it (an entry
    /// was removed, replaced or reordered).
    Unlinked { seq: u64 },
    /// A sequence number is missing or out of order.
    Gap { expected: u64, found: u64 },
    /// The stored bytes of an entry are not an entry.
    Unreadable { seq: u64 },
    /// The last entry is not the head the store recorded (entries were cut
    /// off the end).
    Truncated { head_seq: u64, last_seq: u64 },
}

/// The result of [`MetaStore::audit_verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Entries checked.
    pub entries: u64,
    /// The first place the chain does not hold, if any.
    pub first_break: Option<AuditBreak>,
}

impl MetaStore {
    /// Append one entry on its own (a refusal, or a change kept outside the
    /// metadata), and return it. Durable at the next [`MetaStore::durable`].
    pub fn audit_append(&self, draft: &AuditDraft) -> Result<AuditRecord> {
        let t = &self.t;
        (&t.meta, &t.audit)
            .transaction(|(meta, audit)| append_in(meta, audit, draft))
            .map_err(tx_err("append audit entry"))
    }

    /// Entries matching `filter`, oldest first, at most `filter.limit`.
    pub fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let start = filter.after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for kv in self.t.audit.range(seq_key(start)..) {
            let (_, v) = kv.map_err(engine("scan audit log"))?;
            let r: AuditRecord = dec("audit entry", &v)?;
            if filter.matches(&r) {
                out.push(r);
                if out.len() >= filter.limit.max(1) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The number of the newest entry (0 when the log is empty).
    pub fn audit_head(&self) -> Result<u64> {
        Ok(crate::engine::get::<Head>(&self.t.meta, HEAD_KEY, "audit head")?.map_or(0, |h| h.seq))
    }

    /// Recompute the whole chain, oldest first, and say where it first
    /// breaks. Reads the log in order, one entry at a time.
    pub fn audit_verify(&self) -> Result<AuditVerdict> {
        let head: Option<Head> = crate::engine::get(&self.t.meta, HEAD_KEY, "audit head")?;
        let mut prev = zero_hash();
        let mut expected = 1u64;
        let mut entries = 0u64;
        let verdict = |entries, first_break| AuditVerdict {
            entries,
            first_break,
        };
        for kv in self.t.audit.iter() {
            let (k, v) = kv.map_err(engine("scan audit log"))?;
            let key_seq = k
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX);
            let Ok(r) = dec::<AuditRecord>("audit entry", &v) else {
                return Ok(verdict(
                    entries,
                    Some(AuditBreak::Unreadable { seq: key_seq }),
                ));
            };
            entries += 1;
            if r.seq != expected || key_seq != r.seq {
                return Ok(verdict(
                    entries,
                    Some(AuditBreak::Gap {
                        expected,
                        found: r.seq,
                    }),
                ));
            }
            if r.computed_hash() != r.hash {
                return Ok(verdict(entries, Some(AuditBreak::Edited { seq: r.seq })));
            }
            if r.prev != prev {
                return Ok(verdict(entries, Some(AuditBreak::Unlinked { seq: r.seq })));
            }
            prev = r.hash;
            expected += 1;
        }
        let last = expected - 1;
        match head {
            Some(h) if h.seq != last || (last > 0 && h.hash != prev) => Ok(verdict(
                entries,
                Some(AuditBreak::Truncated {
                    head_seq: h.seq,
                    last_seq: last,
                }),
            )),
            None if last > 0 => Ok(verdict(
                entries,
                Some(AuditBreak::Truncated {
                    head_seq: 0,
                    last_seq: last,
                }),
            )),
            _ => Ok(verdict(entries, None)),
        }
    }
}
