//! The `scrub` worker: reads every stored block at a set pace, checks its
//! blake3 against its id, and records the blocks whose bytes do not match
//! (corrupt) or are gone (missing). A damaged block is reported missing to
//! its archive's device, whose next upload of it heals it
//! (`Coffer::put_block`).
//!
//! A pass walks the block records a page at a time (no iterator is held
//! across reads), so uploads and commits go on while it runs. The end of a
//! complete pass is stored; after a restart the next pass starts one
//! interval after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_meta::{Damage, StoredBlock};
use coffer_storage::{Location, StorageError};
use coffer_types::wire::{ScrubArchive, ScrubStatus};
use coffer_types::{BlockId, UnixMillis};
use futures::StreamExt;

use crate::access::{Permission, Principal};
use crate::events::FoundBy;
use crate::workers::{StepFuture, Worker};
use crate::{Coffer, CoreError, Result};

/// Block records read per page.
const PAGE: usize = 256;

/// How the scrub runs (`[scrub]` of the config file).
#[derive(Debug, Clone, Copy)]
pub struct ScrubSettings {
    /// Bytes read per second, at most.
    pub bytes_per_sec: u64,
    /// From the end of one pass to the start of the next.
    pub interval: Duration,
}

/// The progress of the current (or last) pass.
#[derive(Debug, Default)]
pub(crate) struct ScrubProgress {
    running: bool,
    started_at: Option<UnixMillis>,
    checked_blocks: u64,
    checked_bytes: u64,
    last_found: u64,
    settings: Option<ScrubSettings>,
}

struct Scrub {
    core: Coffer,
    settings: ScrubSettings,
}

impl Worker for Scrub {
    fn name(&self) -> &str {
        "scrub"
    }

    fn interval(&self) -> Duration {
        self.settings.interval
    }

    fn first_delay(&self) -> Duration {
        let last = self.core.meta.scrub_finished().ok().flatten().unwrap_or(0);
        let due = last.saturating_add(self.settings.interval.as_millis() as u64);
        Duration::from_millis(due.saturating_sub(self.core.now()))
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.core
                .scrub_pass(self.settings)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl Coffer {
    /// The scrub worker (the supervisor runs it; `coffer admin scrub run`
    /// starts a pass now).
    pub fn scrub_worker(&self, settings: ScrubSettings) -> Arc<dyn Worker> {
        self.scrub.lock().expect("scrub progress").settings = Some(settings);
        Arc::new(Scrub {
            core: self.clone(),
            settings,
        })
    }

    fn scrub_progress(&self) -> std::sync::MutexGuard<'_, ScrubProgress> {
        self.scrub.lock().expect("scrub progress")
    }

    /// One whole pass over every stored block.
    async fn scrub_pass(&self, settings: ScrubSettings) -> Result<()> {
        {
            let mut p = self.scrub_progress();
            p.running = true;
            p.started_at = Some(self.now());
            p.checked_blocks = 0;
            p.checked_bytes = 0;
        }
        let r = self.scrub_all(settings).await;
        let mut p = self.scrub_progress();
        p.running = false;
        if let Ok(found) = r {
            p.last_found = found;
        }
        r.map(|_| ())
    }

    async fn scrub_all(&self, settings: ScrubSettings) -> Result<u64> {
        let start = Instant::now();
        let mut read = 0u64;
        let mut found = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let cursor = after.clone();
            let page = self
                .meta_blocking("scrub: read block records", move |m| {
                    Ok(m.blocks_page(cursor.as_deref(), PAGE)?)
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for b in page {
                if let Some(kind) = self.check(&b).await? {
                    found += 1;
                    if self
                        .meta
                        .mark_damaged(&b.archive, &b.id, kind, self.now())?
                    {
                        tracing::error!(archive = %b.archive, block = %b.id, damage = ?kind, "scrub: a stored block is damaged; its device's next backup uploads it again");
                        self.publish_damage(&b.archive, &b.id, kind, FoundBy::Scrub);
                    }
                }
                read += b.record.size;
                {
                    let mut p = self.scrub_progress();
                    p.checked_blocks += 1;
                    p.checked_bytes += b.record.size;
                }
                // Keep to the pace: no faster than bytes_per_sec on average.
                let due =
                    Duration::from_secs_f64(read as f64 / settings.bytes_per_sec.max(1) as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.meta.set_scrub_finished(self.now())?;
        tracing::info!(
            blocks = self.scrub_progress().checked_blocks,
            bytes = read,
            damaged = found,
            secs = start.elapsed().as_secs(),
            "scrub pass finished"
        );
        Ok(found)
    }

    /// Read one block whole and check it; `None` when it is good.
    async fn check(&self, b: &StoredBlock) -> Result<Option<Damage>> {
        if b.record.size == 0 {
            return Ok(None);
        }
        let Some(at) = Location::decode(&b.record.location) else {
            return Ok(Some(Damage::Corrupt));
        };
        let mut stream = match self.storage.get(b.archive.as_str(), &b.id, at, None).await {
            Ok(s) => s,
            Err(StorageError::NotFound { .. }) => return Ok(Some(Damage::Missing)),
            Err(StorageError::Corrupt { .. }) => return Ok(Some(Damage::Corrupt)),
            Err(e) => return Err(e.into()),
        };
        let mut hasher = blake3::Hasher::new();
        let mut len = 0u64;
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(p) => {
                    len += p.len() as u64;
                    hasher.update(&p);
                }
                Err(StorageError::NotFound { .. }) => return Ok(Some(Damage::Missing)),
                // A short or unreadable record is damage too; a backend
                // that cannot be reached is not (the pass is retried).
                Err(e @ StorageError::Unavailable { .. }) => return Err(e.into()),
                Err(_) => return Ok(Some(Damage::Corrupt)),
            }
        }
        let actual = BlockId::from_bytes(*hasher.finalize().as_bytes());
        Ok((actual != b.id || len != b.record.size).then_some(Damage::Corrupt))
    }

    /// Where the scrub stands, and the damaged blocks by archive.
    pub async fn scrub_status(&self, p: &Principal) -> Result<ScrubStatus> {
        self.require(p, Permission::ReadServer, "reading the scrub status")
            .await?;
        let damaged = self
            .meta_blocking("scrub: read damaged blocks", |m| Ok(m.damaged_blocks()?))
            .await?;
        let mut archives: Vec<ScrubArchive> = Vec::new();
        for d in damaged {
            if archives.last().is_none_or(|a| a.archive != d.archive) {
                archives.push(ScrubArchive {
                    archive: d.archive.clone(),
                    corrupt: Vec::new(),
                    missing: Vec::new(),
                });
            }
            let a = archives.last_mut().expect("pushed");
            match d.kind {
                Damage::Corrupt => a.corrupt.push(d.id),
                Damage::Missing => a.missing.push(d.id),
            }
        }
        let last_finished = self.meta.scrub_finished()?;
        let pr = self.scrub_progress();
        Ok(ScrubStatus {
            running: pr.running,
            bytes_per_sec: pr.settings.map_or(0, |s| s.bytes_per_sec),
            interval_secs: pr.settings.map_or(0, |s| s.interval.as_secs()),
            started_at: pr.started_at,
            checked_blocks: pr.checked_blocks,
            checked_bytes: pr.checked_bytes,
            last_finished,
            last_found: pr.last_found,
            archives,
        })
    }

    /// Start a scrub pass now (or right after the running one).
    pub async fn scrub_run(&self, p: &Principal) -> Result<ScrubStatus> {
        self.require(p, Permission::ManageServer, "starting a scrub")
            .await?;
        let kicked = self.workers.get().is_some_and(|s| s.kick("scrub"));
        if !kicked {
            return Err(CoreError::Conflict(
                "the scrub worker is not running on this server".into(),
            ));
        }
        self.scrub_status(p).await
    }

    /// Damaged blocks not healed yet, for metrics.
    pub fn damaged_block_count(&self) -> Result<u64> {
        Ok(self.meta.damaged_blocks()?.len() as u64)
    }
}
