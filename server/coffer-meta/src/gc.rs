//! What garbage collection and backup expiry need from the metadata:
//! condemned blocks, the destruction journal, the per-archive epochs that
//! fence a sweep against concurrent commits, backup removal, and the
//! compliance clock's high-water mark.
//!
//! The protocol (see `coffer-core`'s `gc.rs` for the whole of it):
//! 1. A sweep reads an archive's commit epoch, computes the blocks no
//!    backup, named reference or recent session needs, and **condemns**
//!    them in small transactions that check the commit epoch is unchanged
//!    and move the sweep epoch. A condemned block reads as absent: `missing`
//!    asks for it again and a commit naming it fails with `missing_blocks`.
//! 2. A commit reads the sweep epoch before its presence check and compares
//!    it in its transaction (which moves the commit epoch); if a sweep
//!    condemned blocks meanwhile, it checks again. A commit that won the
//!    race makes the next condemn transaction fail, and the sweep starts
//!    the archive over.
//! 3. Destroying a block is one transaction that removes its record and its
//!    condemned mark and writes a **journal** entry (the intent), then the
//!    bytes are deleted, then the entry. An upload that stores the block
//!    again removes the mark (and a destruction that finds no mark does
//!    nothing); an upload that finds a journal entry is told to retry, so
//!    bytes just written are never deleted by a sweep behind it. At start,
//!    the journal is replayed: every entry's bytes are deleted again
//!    (idempotent), and nothing outside the journal is ever deleted.

use coffer_types::{BlockId, Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::archives::ArchiveRecord;
use crate::audit::{append_in, AuditDraft};
use crate::backups::BackupRecord;
use crate::blocks::BlockRecord;
use crate::engine::{enc, engine, key, prefix, tx_dec, tx_err, TxResult};
use crate::{MetaStore, Result};

/// The two epochs of an archive: commits (moved by every commit and named
/// reference) and sweeps (moved by every condemn transaction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Epochs {
    pub commits: u64,
    pub sweeps: u64,
}

impl Epochs {
    fn decode(v: Option<&[u8]>) -> Self {
        let n = |r: std::ops::Range<usize>| {
            v.and_then(|b| b.get(r))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes)
        };
        Self {
            commits: n(0..8),
            sweeps: n(8..16),
        }
    }

    pub(crate) fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.commits.to_be_bytes());
        out[8..].copy_from_slice(&self.sweeps.to_be_bytes());
        out
    }
}

pub(crate) fn tx_epochs(
    t: &sled::transaction::TransactionalTree,
    archive: &[u8],
) -> TxResult<Epochs> {
    Ok(Epochs::decode(t.get(archive)?.as_deref()))
}

/// A block whose record is gone and whose bytes may not be yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub archive: Name,
    pub id: BlockId,
    /// Where its bytes were (the storage layer's location encoding).
    pub location: Vec<u8>,
}

/// A pack being rewritten: its live records are copied, the index is
/// switched, then the pack file is destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackJournalRecord {
    pub archive: Name,
    pub pack: u64,
    pub started_at: UnixMillis,
}

const HWM_KEY: &[u8] = b"clock.hwm";
const GC_LAST_KEY: &[u8] = b"gc.last_run";

fn split_key(k: &[u8]) -> Option<(Name, BlockId)> {
    let sep = k.iter().position(|b| *b == 0)?;
    let archive = Name::new(String::from_utf8_lossy(&k[..sep]).into_owned()).ok()?;
    let id = <[u8; 32]>::try_from(k.get(sep + 1..)?).ok()?;
    Some((archive, BlockId::from_bytes(id)))
}

impl MetaStore {
    pub fn epochs(&self, archive: &Name) -> Result<Epochs> {
        Ok(Epochs::decode(
            self.t
                .epochs
                .get(archive.as_str().as_bytes())
                .map_err(engine("read archive epochs"))?
                .as_deref(),
        ))
    }

    /// Condemn `ids` of `archive` if no commit happened since the sweep
    /// read `commits`: `false` (and nothing written) if one did. Ids with
    /// no record are skipped.
    pub fn condemn(
        &self,
        archive: &Name,
        ids: &[BlockId],
        commits: u64,
        at: UnixMillis,
    ) -> Result<bool> {
        let a = archive.as_str().as_bytes();
        let t = &self.t;
        (&t.epochs, &t.blocks, &t.condemned)
            .transaction(|(epochs, blocks, condemned)| {
                let mut e = tx_epochs(epochs, a)?;
                if e.commits != commits {
                    return Ok(false);
                }
                for id in ids {
                    let k = key(&[a, id.as_bytes()]);
                    if blocks.get(&k)?.is_some() {
                        condemned.insert(k, &at.to_be_bytes())?;
                    }
                }
                e.sweeps += 1;
                epochs.insert(a, &e.encode())?;
                Ok(true)
            })
            .map_err(tx_err("condemn blocks"))
    }

    /// Whether `id` is condemned.
    pub fn is_condemned(&self, archive: &Name, id: &BlockId) -> Result<bool> {
        self.t
            .condemned
            .contains_key(key(&[archive.as_str().as_bytes(), id.as_bytes()]))
            .map_err(engine("read condemned blocks"))
    }

    /// Lift every condemned mark of `archive` (a sweep that lost a race
    /// with a commit starts over). Returns how many.
    pub fn uncondemn_all(&self, archive: &Name) -> Result<u64> {
        let mut n = 0;
        for kv in self
            .t
            .condemned
            .scan_prefix(prefix(&[archive.as_str().as_bytes()]))
        {
            let (k, _) = kv.map_err(engine("scan condemned blocks"))?;
            self.t
                .condemned
                .remove(k)
                .map_err(engine("lift a condemned mark"))?;
            n += 1;
        }
        Ok(n)
    }

    /// Destroy the records of condemned blocks of `archive`: each record
    /// and its mark go, the archive's counters drop, and blocks with bytes
    /// of their own get a journal entry saying those are to be deleted, in
    /// one transaction that also checks, per block, what the gate requires
    /// at the moment of destruction: still condemned (an upload that stored
    /// it again lifted the mark), stored before `cutoff`, and the archive's
    /// commit epoch still `commits`. Per block: `Ok(record)`
    /// destroyed (journaled), or `Err(code)` refused (`not_condemned`,
    /// `grace`, `archive_changed`).
    pub fn destroy_block_records(
        &self,
        archive: &Name,
        ids: &[BlockId],
        commits: u64,
        cutoff: UnixMillis,
    ) -> Result<Vec<std::result::Result<BlockRecord, &'static str>>> {
        let a = archive.as_str().as_bytes();
        let t = &self.t;
        (
            &t.blocks,
            &t.condemned,
            &t.gc_journal,
            &t.archives,
            &t.corrupt,
            &t.epochs,
        )
            .transaction(|(blocks, condemned, journal, archives, corrupt, epochs)| {
                let changed = tx_epochs(epochs, a)?.commits != commits;
                let mut out = Vec::with_capacity(ids.len());
                let (mut freed, mut gone) = (0u64, 0u64);
                for id in ids {
                    let k = key(&[a, id.as_bytes()]);
                    if changed {
                        out.push(Err("archive_changed"));
                        continue;
                    }
                    if condemned.get(&k)?.is_none() {
                        out.push(Err("not_condemned"));
                        continue;
                    }
                    let Some(rec) = blocks.get(&k)?.and_then(|raw| BlockRecord::decode(&raw))
                    else {
                        condemned.remove(k.as_slice())?;
                        out.push(Err("not_condemned"));
                        continue;
                    };
                    if rec.stored_at >= cutoff {
                        out.push(Err("grace"));
                        continue;
                    }
                    blocks.remove(k.as_slice())?;
                    condemned.remove(k.as_slice())?;
                    if corrupt.get(&k)?.is_some() {
                        corrupt.remove(k.as_slice())?;
                    }
                    // Only bytes of their own need a journal entry: a
                    // packed block's bytes go with its pack's rewrite.
                    if rec.location.is_empty() {
                        journal.insert(k.as_slice(), rec.location.as_slice())?;
                    }
                    freed += rec.size;
                    gone += 1;
                    out.push(Ok(rec));
                }
                if gone > 0 {
                    if let Some(raw) = archives.get(a)? {
                        let mut ar: ArchiveRecord = tx_dec("archive", &raw)?;
                        ar.bytes_stored = ar.bytes_stored.saturating_sub(freed);
                        ar.block_count = ar.block_count.saturating_sub(gone);
                        archives.insert(a, enc(&ar))?;
                    }
                }
                Ok(out)
            })
            .map_err(tx_err("destroy block records"))
    }

    /// Whether a sweep has journaled this block's bytes for deletion and
    /// not yet deleted them.
    pub fn being_destroyed(&self, archive: &Name, id: &BlockId) -> Result<bool> {
        self.t
            .gc_journal
            .contains_key(key(&[archive.as_str().as_bytes(), id.as_bytes()]))
            .map_err(engine("read the journal"))
    }

    /// The bytes of these journaled blocks are gone: drop their entries.
    pub fn journal_done_many(&self, archive: &Name, ids: &[BlockId]) -> Result<()> {
        let mut b = sled::Batch::default();
        for id in ids {
            b.remove(key(&[archive.as_str().as_bytes(), id.as_bytes()]));
        }
        self.t
            .gc_journal
            .apply_batch(b)
            .map_err(engine("clear journal entries"))
    }

    /// Every journal entry (a crash left them; replayed at start).
    pub fn journal(&self) -> Result<Vec<JournalEntry>> {
        let mut out = Vec::new();
        for kv in self.t.gc_journal.iter() {
            let (k, v) = kv.map_err(engine("read the destruction journal"))?;
            if let Some((archive, id)) = split_key(&k) {
                out.push(JournalEntry {
                    archive,
                    id,
                    location: v.to_vec(),
                });
            }
        }
        Ok(out)
    }

    /// Note that pack `pack` of `archive` is being rewritten.
    pub fn pack_journal_begin(&self, rec: &PackJournalRecord) -> Result<()> {
        self.t
            .pack_journal
            .insert(
                key(&[rec.archive.as_str().as_bytes(), &rec.pack.to_be_bytes()]),
                enc(rec),
            )
            .map_err(engine("journal a pack rewrite"))?;
        Ok(())
    }

    pub fn pack_journal_done(&self, archive: &Name, pack: u64) -> Result<()> {
        self.t
            .pack_journal
            .remove(key(&[archive.as_str().as_bytes(), &pack.to_be_bytes()]))
            .map_err(engine("finish a pack rewrite"))?;
        Ok(())
    }

    pub fn pack_journal(&self) -> Result<Vec<PackJournalRecord>> {
        crate::engine::scan(&self.t.pack_journal, &[], "pack journal")
    }

    /// Point block `id` at `to` if it is still at `from` (a pack rewrite
    /// switching the index); false if it moved or went meanwhile.
    pub fn move_block(&self, archive: &Name, id: &BlockId, from: &[u8], to: &[u8]) -> Result<bool> {
        let k = key(&[archive.as_str().as_bytes(), id.as_bytes()]);
        self.t
            .blocks
            .transaction(|blocks| {
                let Some(raw) = blocks.get(&k)? else {
                    return Ok(false);
                };
                let Some(mut rec) = BlockRecord::decode(&raw) else {
                    return Ok(false);
                };
                if rec.location != from {
                    return Ok(false);
                }
                rec.location = to.to_vec();
                blocks.insert(k.as_slice(), rec.encode())?;
                Ok(true)
            })
            .map_err(tx_err("move a block"))
    }

    /// Every block record of `archive`, a page at a time (`after` the key of
    /// the last one seen).
    pub fn archive_blocks_page(
        &self,
        archive: &Name,
        after: Option<&BlockId>,
        n: usize,
    ) -> Result<Vec<(BlockId, BlockRecord)>> {
        let a = archive.as_str().as_bytes();
        let p = prefix(&[a]);
        let start = match after {
            Some(id) => {
                let mut k = key(&[a, id.as_bytes()]);
                k.push(0);
                k
            }
            None => p.clone(),
        };
        let mut out = Vec::with_capacity(n);
        for kv in self.t.blocks.range(start..) {
            let (k, v) = kv.map_err(engine("scan block records"))?;
            if !k.starts_with(&p) {
                break;
            }
            if let (Some((_, id)), Some(rec)) = (split_key(&k), BlockRecord::decode(&v)) {
                out.push((id, rec));
                if out.len() == n {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The blocks pinned by session `session` of `archive`.
    pub fn pins_of(&self, archive: &Name, session: &Name) -> Result<Vec<BlockId>> {
        let p = prefix(&[archive.as_str().as_bytes(), session.as_str().as_bytes()]);
        let mut out = Vec::new();
        for kv in self.t.pins.scan_prefix(&p) {
            let (k, _) = kv.map_err(engine("scan pins"))?;
            if let Ok(id) = <[u8; 32]>::try_from(&k[p.len()..]) {
                out.push(BlockId::from_bytes(id));
            }
        }
        Ok(out)
    }

    /// Whether session `session` pins `id`.
    pub fn pinned(&self, archive: &Name, session: &Name, id: &BlockId) -> Result<bool> {
        self.t
            .pins
            .contains_key(key(&[
                archive.as_str().as_bytes(),
                session.as_str().as_bytes(),
                id.as_bytes(),
            ]))
            .map_err(engine("read pins"))
    }

    /// Every archive that has a record.
    pub fn archive_ids(&self) -> Result<Vec<Name>> {
        let mut out = Vec::new();
        for k in self.t.archives.iter().keys() {
            let k = k.map_err(engine("list archives"))?;
            if let Ok(n) = Name::new(String::from_utf8_lossy(&k).into_owned()) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// The backup ids that have reference chunks (a crash between writing
    /// a list and recording its commit leaves chunks no backup owns).
    pub fn ref_owners(&self, archive: &Name) -> Result<Vec<Name>> {
        let p = prefix(&[archive.as_str().as_bytes()]);
        let mut out: Vec<Name> = Vec::new();
        for k in self.t.refs.scan_prefix(&p).keys() {
            let k = k.map_err(engine("scan backup references"))?;
            let rest = &k[p.len()..];
            let Some(sep) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            if let Ok(n) = Name::new(String::from_utf8_lossy(&rest[..sep]).into_owned()) {
                if out.last() != Some(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// Remove reference chunks of `backup`, which no backup record owns.
    pub fn drop_refs(&self, archive: &Name, backup: &Name) -> Result<()> {
        self.remove_refs_of(archive.as_str().as_bytes(), backup)
    }

    /// The named references of an archive (their blocks are live).
    pub fn named_blocks(&self, archive: &Name) -> Result<Vec<BlockId>> {
        let v: Vec<crate::refs::NamedRef> = crate::engine::scan(
            &self.t.named,
            &prefix(&[archive.as_str().as_bytes()]),
            "named reference",
        )?;
        Ok(v.into_iter().map(|r| r.block).collect())
    }

    /// Destroy a backup's record, with its audit entry, in one transaction
    /// (its reference list goes after, in plain deletes; chunks a crash
    /// leaves behind are owned by no backup and dropped by the next sweep).
    /// `None` if it was gone already.
    pub fn destroy_backup(
        &self,
        archive: &Name,
        id: &Name,
        audit: &AuditDraft,
    ) -> Result<Option<BackupRecord>> {
        let a = archive.as_str().as_bytes();
        let k = key(&[a, id.as_str().as_bytes()]);
        let t = &self.t;
        let done = (&t.backups, &t.archives, &t.meta, &t.audit)
            .transaction(|(backups, archives, meta, log)| {
                let Some(raw) = backups.get(&k)? else {
                    return Ok(None);
                };
                let b: BackupRecord = tx_dec("backup", &raw)?;
                backups.remove(k.as_slice())?;
                if let Some(raw) = archives.get(a)? {
                    let mut ar: ArchiveRecord = tx_dec("archive", &raw)?;
                    ar.backup_count = ar.backup_count.saturating_sub(1);
                    archives.insert(a, enc(&ar))?;
                }
                append_in(meta, log, audit)?;
                Ok(Some(b))
            })
            .map_err(tx_err("destroy a backup"))?;
        if done.is_some() {
            self.remove_refs_of(a, id)?;
        }
        Ok(done)
    }

    /// The compliance clock's persisted high-water mark.
    pub fn clock_hwm(&self) -> Result<Option<UnixMillis>> {
        Ok(self
            .t
            .meta
            .get(HWM_KEY)
            .map_err(engine("read the compliance clock"))?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?))))
    }

    /// Raise the high-water mark to `at` (never lowers it); returns the
    /// stored value.
    pub fn raise_clock_hwm(&self, at: UnixMillis) -> Result<UnixMillis> {
        let v = self
            .t
            .meta
            .fetch_and_update(HWM_KEY, |old| {
                let cur = old
                    .and_then(|v| Some(u64::from_be_bytes(v.try_into().ok()?)))
                    .unwrap_or(0);
                Some(cur.max(at).to_be_bytes().to_vec())
            })
            .map_err(engine("write the compliance clock"))?;
        let old = v
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0);
        Ok(old.max(at))
    }

    /// The last GC run's report (JSON the core defines).
    pub fn gc_last_run(&self) -> Result<Option<serde_json::Value>> {
        crate::engine::get(&self.t.meta, GC_LAST_KEY, "gc report")
    }

    pub fn set_gc_last_run(&self, v: &serde_json::Value) -> Result<()> {
        self.t
            .meta
            .insert(GC_LAST_KEY, enc(v))
            .map_err(engine("write the gc report"))?;
        Ok(())
    }
}
