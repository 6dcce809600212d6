//! Backup sessions and commits.
//!
//! A session records activity and pins the blocks uploaded or announced
//! present in it; a commit turns it atomically into a backup (one restore
//! point) once every referenced block is stored. Commits are idempotent: a
//! retried commit returns the backup the first one made.

use std::collections::HashSet;

use coffer_meta::{
    BackupRecord, BackupStatsRecord, CommitOutcome, NamedRef, SessionRecord, SessionStatus,
};
use coffer_types::wire::{
    BackupInfo, BackupStats, CommitRequest, ProgressRequest, RefInfo, SessionInfo, SessionState,
};
use coffer_types::Name;

use crate::access::DeviceAuth;
use crate::events::EventKind;
use crate::{random16, Coffer, CoreError, Result};

/// Longest agent version string recorded.
const MAX_AGENT_LEN: usize = 128;

impl Coffer {
    /// Open a backup session on the device's archive.
    pub async fn open_session(
        &self,
        device: &DeviceAuth,
        archive: &Name,
        agent: Option<&str>,
    ) -> Result<SessionInfo> {
        let now = self.now();
        self.check_open_sessions(archive, now)?;
        let rec = SessionRecord {
            id: Name::random("se", random16()?),
            archive: archive.clone(),
            state: SessionStatus::Open,
            opened_at: now,
            last_activity: now,
            percent: 0.0,
            bytes: 0,
            files: 0,
            backup: None,
        };
        self.meta.create_session(&rec)?;
        let agent: Option<String> = agent.map(|a| {
            a.chars()
                .filter(|c| !c.is_control())
                .take(MAX_AGENT_LEN)
                .collect()
        });
        self.meta
            .touch_device(&device.device, now, agent.as_deref())?;
        self.meta.durable().await?;
        let info = self.session_info(rec)?;
        let session = info.clone();
        self.publish_for_archive(archive, |device| EventKind::SessionOpened {
            device,
            session,
        });
        Ok(info)
    }

    pub(crate) fn session_record(&self, archive: &Name, session: &str) -> Result<SessionRecord> {
        let sid = Name::new(session).map_err(|e| CoreError::InvalidId(format!("session: {e}")))?;
        self.meta
            .session(archive, &sid)?
            .ok_or_else(|| CoreError::NotFound(format!("session {sid} not found")))
    }

    fn session_info(&self, s: SessionRecord) -> Result<SessionInfo> {
        let pinned_blocks = self.meta.pinned_count(&s.archive, &s.id)?;
        Ok(SessionInfo {
            session: s.id,
            archive: s.archive,
            state: match s.state {
                SessionStatus::Open => SessionState::Open,
                SessionStatus::Committed => SessionState::Committed,
                SessionStatus::Aborted => SessionState::Aborted,
            },
            opened_at: s.opened_at,
            last_activity: s.last_activity,
            percent: s.percent,
            bytes: s.bytes,
            files: s.files,
            pinned_blocks,
            backup: s.backup,
        })
    }

    pub fn session(&self, archive: &Name, session: &str) -> Result<SessionInfo> {
        let s = self.session_record(archive, session)?;
        self.session_info(s)
    }

    /// Record progress of an open session: percent of the selection done,
    /// bytes and files so far. The server stamps the time.
    pub async fn progress(
        &self,
        archive: &Name,
        session: &str,
        p: ProgressRequest,
    ) -> Result<SessionInfo> {
        if !p.percent.is_finite() || !(0.0..=100.0).contains(&p.percent) {
            return Err(CoreError::InvalidRequest(format!(
                "percent is {}; it must be between 0 and 100",
                p.percent
            )));
        }
        let s = self.session_record(archive, session)?;
        if s.state != SessionStatus::Open {
            return Err(closed(&s));
        }
        let now = self.now();
        let updated = self
            .meta
            .update_session(archive, &s.id, |r| {
                if r.state == SessionStatus::Open {
                    r.percent = p.percent;
                    r.bytes = p.bytes;
                    r.files = p.files;
                    r.last_activity = r.last_activity.max(now);
                }
            })?
            .ok_or_else(|| CoreError::NotFound(format!("session {} not found", s.id)))?;
        if updated.state != SessionStatus::Open {
            return Err(closed(&updated));
        }
        self.meta.record_activity(archive, now, Some(p.percent))?;
        self.health_touched(archive);
        self.session_info(updated)
    }

    /// Commit an open session into a backup. Fails with `missing_blocks`
    /// (listing them) if any referenced block is not stored; then nothing is
    /// written and the session stays open. A retry of a successful commit
    /// returns the same backup (`created` false).
    pub async fn commit(
        &self,
        archive: &Name,
        session: &str,
        req: CommitRequest,
    ) -> Result<(BackupInfo, bool)> {
        if !req.stats.percent.is_finite() || !(0.0..=100.0).contains(&req.stats.percent) {
            return Err(CoreError::InvalidRequest(format!(
                "stats.percent is {}; it must be between 0 and 100",
                req.stats.percent
            )));
        }
        if req.blocks.len() > self.limits.max_commit_blocks {
            return Err(CoreError::BodyTooLarge {
                limit: self.limits.max_commit_blocks as u64,
            });
        }
        let s = self.session_record(archive, session)?;
        let backup = BackupRecord {
            id: Name::random("bk", random16()?),
            archive: archive.clone(),
            session: s.id.clone(),
            // The late compliance reading: a wall clock set back never
            // makes a new backup look old (and expire early).
            committed_at: self.compliance_late(),
            manifest: req.manifest,
            block_count: 0,
            stats: BackupStatsRecord {
                files: req.stats.files,
                bytes: req.stats.bytes,
                percent: req.stats.percent,
            },
        };
        let completed = req.stats.percent >= 100.0;
        let (manifest, listed) = (req.manifest, req.blocks);
        let outcome = self
            .meta_blocking("commit", move |m| {
                // The manifest is referenced too; each block is listed once.
                let mut seen = HashSet::with_capacity(listed.len() + 1);
                let mut blocks = Vec::with_capacity(listed.len() + 1);
                for id in std::iter::once(manifest).chain(listed) {
                    if seen.insert(id) {
                        blocks.push(id);
                    }
                }
                drop(seen);
                let backup = BackupRecord {
                    block_count: blocks.len() as u64,
                    ..backup
                };
                Ok(m.commit(&backup, &blocks, completed)?)
            })
            .await?;
        match outcome {
            CommitOutcome::Committed(b) => {
                self.release_pins(archive, &s.id).await?;
                self.meta.durable().await?;
                tracing::info!(archive = %archive, backup = %b.id, blocks = b.block_count, "backup committed");
                let info = backup_info(b, None);
                let backup = info.clone();
                self.publish_for_archive(archive, |device| EventKind::BackupCommitted {
                    device,
                    backup,
                });
                self.health_touched(archive);
                Ok((info, true))
            }
            CommitOutcome::AlreadyCommitted(b) if b.manifest == manifest => {
                // The first commit may not be durable yet if it raced this one.
                self.meta.durable().await?;
                Ok((backup_info(b, None), false))
            }
            CommitOutcome::AlreadyCommitted(b) => Err(CoreError::SessionClosed(format!(
                "session {} was committed as backup {} with another manifest",
                s.id, b.id
            ))),
            CommitOutcome::MissingBlocks(ids) => Err(CoreError::MissingBlocks(ids)),
            CommitOutcome::SessionAborted => Err(closed(&s)),
            CommitOutcome::NoSession => {
                Err(CoreError::NotFound(format!("session {} not found", s.id)))
            }
        }
    }

    /// Refuse a new session when the archive already has its limit of open
    /// sessions active in the last day (older ones, left by a crashed
    /// agent, do not count).
    fn check_open_sessions(&self, archive: &Name, now: coffer_types::UnixMillis) -> Result<()> {
        const ACTIVE_MS: u64 = 24 * 3600 * 1000;
        let mut open: Vec<SessionRecord> = self
            .meta
            .sessions(archive)?
            .into_iter()
            .filter(|s| s.state == SessionStatus::Open && s.last_activity + ACTIVE_MS >= now)
            .collect();
        if open.len() < self.limits.max_open_sessions {
            return Ok(());
        }
        open.sort_by_key(|s| s.last_activity);
        Err(CoreError::TooManyRequests(format!(
            "the archive has {} open sessions active in the last day \
             (limits.max_open_sessions); commit or abort one first (the least recent is {})",
            open.len(),
            open[0].id
        )))
    }

    /// Drop a closed session's pins (a million of them, for a big backup)
    /// on the blocking pool.
    async fn release_pins(&self, archive: &Name, session: &Name) -> Result<u64> {
        let (archive, session) = (archive.clone(), session.clone());
        self.meta_blocking("release pins", move |m| {
            Ok(m.release_pins(&archive, &session)?)
        })
        .await
    }

    /// Abort an open session and release its pins; `failed` says why when
    /// the backup failed (rather than being cancelled). Aborting an aborted
    /// session is a no-op; a committed one cannot be aborted.
    pub async fn abort(
        &self,
        archive: &Name,
        session: &str,
        failed: Option<&str>,
    ) -> Result<SessionInfo> {
        if let Some(r) = failed {
            if r.chars().count() > 512 || r.chars().any(char::is_control) {
                return Err(CoreError::InvalidRequest(
                    "failed: a reason is at most 512 printable characters".into(),
                ));
            }
        }
        let s = self.session_record(archive, session)?;
        let now = self.now();
        let updated = self
            .meta
            .update_session(archive, &s.id, |r| {
                if r.state == SessionStatus::Open {
                    r.state = SessionStatus::Aborted;
                    r.last_activity = r.last_activity.max(now);
                }
            })?
            .ok_or_else(|| CoreError::NotFound(format!("session {} not found", s.id)))?;
        if updated.state == SessionStatus::Committed {
            return Err(closed(&updated));
        }
        // The pins stay: blocks an aborted session uploaded or was told
        // about are kept for the collection grace after its last activity
        // (its resumption asks for them again); the collector drops them.
        self.meta.durable().await?;
        let was_open = s.state == SessionStatus::Open;
        let info = self.session_info(updated)?;
        if was_open {
            let session = info.clone();
            self.publish_for_archive(archive, |device| match failed {
                Some(reason) => EventKind::SessionFailed {
                    device,
                    session,
                    reason: reason.to_string(),
                },
                None => EventKind::SessionAborted { device, session },
            });
        }
        Ok(info)
    }

    /// Point the archive's reference `name` at a block it holds (e.g. the
    /// agent's wrapped key, so a new machine can find it). `missing_blocks`
    /// if the block is not stored.
    pub async fn set_ref(
        &self,
        archive: &Name,
        name: &str,
        block: coffer_types::BlockId,
    ) -> Result<RefInfo> {
        let name =
            Name::new(name).map_err(|e| CoreError::InvalidId(format!("reference name: {e}")))?;
        let rec = NamedRef {
            block,
            updated_at: self.now(),
        };
        // The archive key is written once: replacing it would leave every
        // backup made with the old one unreadable.
        let once = name.as_str() == KEY_REF;
        match self.meta.set_named_ref(archive, &name, &rec, once)? {
            coffer_meta::SetRefOutcome::Set => {}
            coffer_meta::SetRefOutcome::MissingBlock => {
                return Err(CoreError::MissingBlocks(vec![block]))
            }
            coffer_meta::SetRefOutcome::Exists(old) => {
                return Err(CoreError::Conflict(format!(
                    "the archive's {KEY_REF} reference names block {} already and is never \
                     replaced; read it (GET refs/{KEY_REF}) and open it with the passphrase",
                    old.block
                )))
            }
        }
        self.meta.durable().await?;
        Ok(RefInfo {
            name,
            block,
            updated_at: rec.updated_at,
        })
    }

    pub fn get_ref(&self, archive: &Name, name: &str) -> Result<RefInfo> {
        let name =
            Name::new(name).map_err(|e| CoreError::InvalidId(format!("reference name: {e}")))?;
        let r = self
            .meta
            .named_ref(archive, &name)?
            .ok_or_else(|| CoreError::NotFound(format!("reference {name} not found")))?;
        Ok(RefInfo {
            name,
            block: r.block,
            updated_at: r.updated_at,
        })
    }

    /// The archive's backups, oldest first.
    pub fn backups(&self, archive: &Name) -> Result<Vec<BackupInfo>> {
        let bad = self.meta.damaged_in(archive)?;
        self.meta
            .backups(archive)?
            .into_iter()
            .map(|b| {
                let damaged_blocks = match bad.is_empty() {
                    true => 0,
                    false => self.damaged_refs(archive, &b.id, &bad)?,
                };
                Ok(BackupInfo {
                    damaged_blocks,
                    ..backup_info(b, None)
                })
            })
            .collect()
    }

    /// The archive's blocks found damaged and not healed, and for each
    /// backup referencing any of them, how many it references. Nothing is
    /// scanned beyond one small prefix when no block is damaged (the usual
    /// case); otherwise each backup's references are read once.
    pub(crate) fn damage(
        &self,
        archive: &Name,
    ) -> Result<(
        std::collections::HashSet<coffer_types::BlockId>,
        std::collections::HashMap<Name, u64>,
    )> {
        let bad = self.meta.damaged_in(archive)?;
        let mut per = std::collections::HashMap::new();
        if !bad.is_empty() {
            for b in self.meta.backups(archive)? {
                let n = self.damaged_refs(archive, &b.id, &bad)?;
                if n > 0 {
                    per.insert(b.id, n);
                }
            }
        }
        Ok((bad, per))
    }

    fn damaged_refs(
        &self,
        archive: &Name,
        backup: &Name,
        bad: &std::collections::HashSet<coffer_types::BlockId>,
    ) -> Result<u64> {
        let mut n = 0;
        for chunk in self.meta.backup_block_chunks(archive, backup) {
            n += chunk?.iter().filter(|id| bad.contains(id)).count() as u64;
        }
        Ok(n)
    }

    /// One backup with the list of blocks it references.
    pub fn backup(&self, archive: &Name, backup: &str) -> Result<BackupInfo> {
        let (info, chunks) = self.backup_streamed(archive, backup)?;
        let mut blocks = Vec::with_capacity(info.block_count as usize);
        for c in chunks {
            blocks.extend(c?);
        }
        Ok(BackupInfo {
            blocks: Some(blocks),
            ..info
        })
    }

    /// One backup (without `blocks`), and the blocks it references a chunk
    /// at a time, for answers that stream them.
    pub fn backup_streamed(
        &self,
        archive: &Name,
        backup: &str,
    ) -> Result<(
        BackupInfo,
        impl Iterator<Item = Result<Vec<coffer_types::BlockId>>> + Send + 'static,
    )> {
        let bid = Name::new(backup).map_err(|e| CoreError::InvalidId(format!("backup: {e}")))?;
        let b = self
            .meta
            .backup(archive, &bid)?
            .ok_or_else(|| CoreError::NotFound(format!("backup {bid} not found")))?;
        let bad = self.meta.damaged_in(archive)?;
        let damaged_blocks = match bad.is_empty() {
            true => 0,
            false => self.damaged_refs(archive, &bid, &bad)?,
        };
        let chunks = self
            .meta
            .backup_block_chunks(archive, &bid)
            .map(|c| c.map_err(CoreError::from));
        let info = BackupInfo {
            damaged_blocks,
            ..backup_info(b, None)
        };
        Ok((info, chunks))
    }
}

/// The reference to the archive's wrapped key: write-once.
const KEY_REF: &str = "key";

pub(crate) fn closed(s: &SessionRecord) -> CoreError {
    let state = match s.state {
        SessionStatus::Open => "open",
        SessionStatus::Committed => "committed",
        SessionStatus::Aborted => "aborted",
    };
    CoreError::SessionClosed(format!(
        "session {} is {state} and takes no more changes",
        s.id
    ))
}

fn backup_info(b: BackupRecord, blocks: Option<Vec<coffer_types::BlockId>>) -> BackupInfo {
    BackupInfo {
        backup: b.id,
        archive: b.archive,
        session: b.session,
        committed_at: b.committed_at,
        manifest: b.manifest,
        block_count: b.block_count,
        stats: BackupStats {
            files: b.stats.files,
            bytes: b.stats.bytes,
            percent: b.stats.percent,
        },
        damaged_blocks: 0,
        blocks,
    }
}
