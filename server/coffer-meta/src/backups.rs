//! Committed backups and the block lists they reference; the commit that
//! turns an open session into a backup.

use coffer_types::{BlockId, Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;
use sled::Transactional;

use crate::archives::ArchiveRecord;
use crate::engine::{abort, enc, engine, get, key, prefix, scan, tx_dec, tx_err, TxResult};
use crate::sessions::{SessionRecord, SessionStatus};
use crate::{MetaError, MetaStore, Result};

/// Block ids per stored chunk of a backup's reference list (64 KiB values, so
/// sled never spills them to its separate blob files).
const REFS_PER_CHUNK: usize = 2048;

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
    pub fn commit(
        &self,
        backup: &BackupRecord,
        blocks: &[BlockId],
        completed: bool,
    ) -> Result<CommitOutcome> {
        let archive = backup.archive.as_str().as_bytes();
        let sk = key(&[archive, backup.session.as_str().as_bytes()]);
        let t = &self.t;
        (&t.sessions, &t.blocks, &t.backups, &t.refs, &t.archives)
            .transaction(|(sessions, blocks_t, backups, refs, archives)| {
                let Some(raw) = sessions.get(&sk)? else {
                    return Ok(CommitOutcome::NoSession);
                };
                let mut session: SessionRecord = tx_dec("session", &raw)?;
                match session.state {
                    SessionStatus::Aborted => return Ok(CommitOutcome::SessionAborted),
                    SessionStatus::Committed => {
                        let bid = session.backup.clone().unwrap_or_else(|| backup.id.clone());
                        let raw = backups.get(key(&[archive, bid.as_str().as_bytes()]))?;
                        return match raw {
                            Some(raw) => {
                                Ok(CommitOutcome::AlreadyCommitted(tx_dec("backup", &raw)?))
                            }
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
                let missing = missing_in(blocks_t, archive, blocks)?;
                if !missing.is_empty() {
                    return Ok(CommitOutcome::MissingBlocks(missing));
                }
                backups.insert(key(&[archive, backup.id.as_str().as_bytes()]), enc(backup))?;
                for (i, chunk) in blocks.chunks(REFS_PER_CHUNK).enumerate() {
                    let mut v = Vec::with_capacity(chunk.len() * 32);
                    for id in chunk {
                        v.extend_from_slice(id.as_bytes());
                    }
                    let n = (i as u32).to_be_bytes();
                    refs.insert(key(&[archive, backup.id.as_str().as_bytes(), &n]), v)?;
                }
                session.state = SessionStatus::Committed;
                session.backup = Some(backup.id.clone());
                session.last_activity = session.last_activity.max(backup.committed_at);
                session.percent = backup.stats.percent;
                sessions.insert(sk.as_slice(), enc(&session))?;
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
                Ok(CommitOutcome::Committed(backup.clone()))
            })
            .map_err(tx_err("commit backup"))
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
        let p = prefix(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]);
        let mut out = Vec::new();
        for kv in self.t.refs.scan_prefix(p) {
            let (_, v) = kv.map_err(engine("read backup references"))?;
            for c in v.chunks_exact(32) {
                let mut b = [0u8; 32];
                b.copy_from_slice(c);
                out.push(BlockId::from_bytes(b));
            }
        }
        Ok(out)
    }
}

fn missing_in(
    blocks: &TransactionalTree,
    archive: &[u8],
    ids: &[BlockId],
) -> TxResult<Vec<BlockId>> {
    let mut missing = Vec::new();
    for id in ids {
        if blocks.get(key(&[archive, id.as_bytes()]))?.is_none() {
            missing.push(*id);
        }
    }
    Ok(missing)
}
