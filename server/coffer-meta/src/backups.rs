//! Committed backups and the block lists they reference; the commit that
//! turns an open session into a backup.

use coffer_types::{BlockId, Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::archives::ArchiveRecord;
use crate::engine::{abort, enc, engine, get, key, prefix, scan, tx_dec, tx_err};
use crate::sessions::{SessionRecord, SessionStatus};
use crate::{MetaError, MetaStore, Result};

/// Block ids per stored chunk of a backup's reference list: 4 KiB values.
/// sled splits a leaf past 16 entries and spills a node image over about
/// 128 KiB (a quarter of its 512 KiB segment) to a blob file of its own;
/// 17 chunks of 4 KiB stay well below that, so reference lists live in the
/// log. (Blob files are synced by the group commit all the same.) Readers
/// take chunks of any size: lists written with 2 048 ids per chunk by
/// earlier versions read back unchanged.
const REFS_PER_CHUNK: usize = 128;

/// How often a commit checks its blocks again when sweeps keep condemning
/// in between, before it answers "retry".
const COMMIT_ATTEMPTS: usize = 8;

/// What a backup covers, as the agent reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupStatsRecord {
    pub files: u64,
    pub bytes: u64,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: Name,
    pub archive: Name,
    pub session: Name,
    pub committed_at: UnixMillis,
    pub manifest: BlockId,
    pub block_count: u64,
    pub stats: BackupStatsRecord,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// The backup was recorded by this call.
    Committed(BackupRecord),
    /// The session was committed before (a retried commit): its backup.
    AlreadyCommitted(BackupRecord),
    /// These referenced blocks are not in the archive; nothing was written.
    MissingBlocks(Vec<BlockId>),
    /// The session was aborted.
    SessionAborted,
    /// No such session in this archive.
    NoSession,
}

impl MetaStore {
    /// Commit a session into `backup` atomically: every referenced block must be
    /// in the archive, the session must be open (or already committed, which
    /// returns its backup), and the archive's counters and last-completed time
    /// move in the same transaction. `completed` marks a backup that covered
    /// 100 % of the selection.
    ///
    /// A sled transaction holds a lock every other metadata operation of the
    /// process waits for, so the long parts run outside it: the presence check
    /// of every block (plain reads; blocks are never removed while a session
    /// that announced or uploaded them is open: pins and the collection grace
    /// keep them) and the reference list (plain writes under the new backup's
    /// id, which nothing reads until the transaction records the backup, and
    /// which are removed again when it does not; a crash between the two
    /// leaves chunks under an id no backup has, which the collector removes).
    /// The transaction itself touches three records. Blocking: call it from
    /// the blocking pool.
    pub fn commit(
        &self,
        backup: &BackupRecord,
        blocks: &[BlockId],
        completed: bool,
    ) -> Result<CommitOutcome> {
        let archive = backup.archive.as_str().as_bytes();
        let sk = key(&[archive, backup.session.as_str().as_bytes()]);
        // A sweep that condemns blocks between the presence check and the
        // transaction moves the sweep epoch: check again (see `gc.rs`).
        let mut written = false;
        for _ in 0..COMMIT_ATTEMPTS {
            let sweeps = self.epochs(&backup.archive)?.sweeps;
            match self.session(&backup.archive, &backup.session)? {
                None => return Ok(CommitOutcome::NoSession),
                Some(s) if s.state != SessionStatus::Open => {
                    // Answered by the transaction below, which reads it again.
                }
                Some(_) => {
                    let missing = self.missing_of(archive, blocks)?;
                    if !missing.is_empty() {
                        if written {
                            self.remove_refs(archive, &backup.id)?;
                        }
                        return Ok(CommitOutcome::MissingBlocks(missing));
                    }
                    if !written {
                        self.write_refs(archive, &backup.id, blocks)?;
                        written = true;
                    }
                }
            }
            match self.commit_tx(backup, &sk, sweeps, completed)? {
                Some(outcome) => {
                    if !matches!(outcome, CommitOutcome::Committed(_)) {
                        // Another commit of the session won, or it was
                        // aborted meanwhile: this backup id was never
                        // recorded.
                        self.remove_refs(archive, &backup.id)?;
                    }
                    return Ok(outcome);
                }
                None => continue,
            }
        }
        self.remove_refs(archive, &backup.id)?;
        Err(MetaError::BeingDestroyed(backup.manifest))
    }

    /// The commit's transaction; `None` when a sweep moved the archive's
    /// sweep epoch away from `sweeps` (nothing written).
    fn commit_tx(
        &self,
        backup: &BackupRecord,
        sk: &[u8],
        sweeps: u64,
        completed: bool,
    ) -> Result<Option<CommitOutcome>> {
        let archive = backup.archive.as_str().as_bytes();
        let t = &self.t;
        (&t.sessions, &t.backups, &t.archives, &t.epochs)
            .transaction(|(sessions, backups, archives, epochs)| {
                let mut e = crate::gc::tx_epochs(epochs, archive)?;
                if e.sweeps != sweeps {
                    return Ok(None);
                }
                let Some(raw) = sessions.get(sk)? else {
                    return Ok(Some(CommitOutcome::NoSession));
                };
                let mut session: SessionRecord = tx_dec("session", &raw)?;
                match session.state {
                    SessionStatus::Aborted => return Ok(Some(CommitOutcome::SessionAborted)),
                    SessionStatus::Committed => {
                        let bid = session.backup.clone().unwrap_or_else(|| backup.id.clone());
                        let raw = backups.get(key(&[archive, bid.as_str().as_bytes()]))?;
                        return match raw {
                            Some(raw) => Ok(Some(CommitOutcome::AlreadyCommitted(tx_dec(
                                "backup", &raw,
                            )?))),
                            None => abort(MetaError::Engine {
                                context: "commit",
                                source: format!(
                                    "committed session {} has no backup {bid}",
                                    backup.session
                                )
                                .into(),
                            }),
                        };
                    }
                    SessionStatus::Open => {}
                }
                backups.insert(key(&[archive, backup.id.as_str().as_bytes()]), enc(backup))?;
                session.state = SessionStatus::Committed;
                session.backup = Some(backup.id.clone());
                session.last_activity = session.last_activity.max(backup.committed_at);
                session.percent = backup.stats.percent;
                sessions.insert(sk, enc(&session))?;
                e.commits += 1;
                epochs.insert(archive, &e.encode())?;
                if let Some(raw) = archives.get(archive)? {
                    let mut a: ArchiveRecord = tx_dec("archive", &raw)?;
                    a.backup_count += 1;
                    a.percent_complete = Some(backup.stats.percent);
                    if completed {
                        let t = backup.committed_at;
                        a.last_completed = Some(a.last_completed.map_or(t, |c| c.max(t)));
                    }
                    archives.insert(archive, enc(&a))?;
                }
                Ok(Some(CommitOutcome::Committed(backup.clone())))
            })
            .map_err(tx_err("commit backup"))
    }

    /// Of `ids`, those the archive does not hold, or holds only as a copy
    /// found corrupt (plain reads).
    fn missing_of(&self, archive: &[u8], ids: &[BlockId]) -> Result<Vec<BlockId>> {
        let mut missing = Vec::new();
        for id in ids {
            if !self.holds_good(archive, id)? {
                missing.push(*id);
            }
        }
        Ok(missing)
    }

    /// Write the reference list of backup `id`, a chunk per key.
    fn write_refs(&self, archive: &[u8], id: &Name, blocks: &[BlockId]) -> Result<()> {
        for (i, chunk) in blocks.chunks(REFS_PER_CHUNK).enumerate() {
            let mut v = Vec::with_capacity(chunk.len() * 32);
            for b in chunk {
                v.extend_from_slice(b.as_bytes());
            }
            let n = (i as u32).to_be_bytes();
            self.t
                .refs
                .insert(key(&[archive, id.as_str().as_bytes(), &n]), v)
                .map_err(engine("write backup references"))?;
        }
        Ok(())
    }

    pub(crate) fn remove_refs_of(&self, archive: &[u8], id: &Name) -> Result<()> {
        self.remove_refs(archive, id)
    }

    fn remove_refs(&self, archive: &[u8], id: &Name) -> Result<()> {
        for kv in self
            .t
            .refs
            .scan_prefix(prefix(&[archive, id.as_str().as_bytes()]))
        {
            let (k, _) = kv.map_err(engine("scan backup references"))?;
            self.t
                .refs
                .remove(k)
                .map_err(engine("remove backup references"))?;
        }
        Ok(())
    }

    /// The archive's committed backups, oldest first.
    pub fn backups(&self, archive: &Name) -> Result<Vec<BackupRecord>> {
        let mut v: Vec<BackupRecord> = scan(
            &self.t.backups,
            &prefix(&[archive.as_str().as_bytes()]),
            "backup",
        )?;
        v.sort_by(|a, b| a.committed_at.cmp(&b.committed_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    pub fn backup(&self, archive: &Name, id: &Name) -> Result<Option<BackupRecord>> {
        get(
            &self.t.backups,
            &key(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]),
            "backup",
        )
    }

    /// The blocks a backup references, in the order committed.
    pub fn backup_blocks(&self, archive: &Name, id: &Name) -> Result<Vec<BlockId>> {
        let mut out = Vec::new();
        for chunk in self.backup_block_chunks(archive, id) {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// The blocks a backup references, in the order committed, a stored
    /// chunk (128 ids; 2 048 in lists written by earlier versions) at a
    /// time: a million-block backup is never in memory at once.
    pub fn backup_block_chunks(
        &self,
        archive: &Name,
        id: &Name,
    ) -> impl Iterator<Item = Result<Vec<BlockId>>> + Send + 'static {
        let p = prefix(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]);
        self.t.refs.scan_prefix(p).map(|kv| {
            let (_, v) = kv.map_err(engine("read backup references"))?;
            Ok(v.chunks_exact(32)
                .map(|c| {
                    let mut b = [0u8; 32];
                    b.copy_from_slice(c);
                    BlockId::from_bytes(b)
                })
                .collect())
        })
    }
}
