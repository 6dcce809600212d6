//! Garbage collection of blocks no backup references (DESIGN §6, research
//! B7), safe against concurrent backups.
//!
//! A run, archive by archive:
//! 1. **Mark.** Read the archive's commit epoch, then the live set: every
//!    block of every backup (held ones included: they are backups), of every
//!    reference list not yet recorded as a backup, and of every named
//!    reference. A block outside it is a candidate if it was stored before
//!    the grace cutoff (`[gc] grace`, compliance time) and no session open
//!    or active since the cutoff pins it (a pin: uploaded, or announced
//!    present, by that session).
//! 2. **Condemn** the candidates under the epoch (`coffer-meta`'s `gc.rs`):
//!    a commit since the mark makes this fail, and the archive starts over;
//!    a condemned block reads as absent to `missing` and to commits.
//! 3. **Sweep.** Per block, the gate ([`Coffer::destroy`]) checks again —
//!    still condemned, epoch unchanged, past the grace, unpinned — then the
//!    record goes with a journal entry; the journal is made durable before
//!    any byte is deleted, then the bytes go (S3: a bounded number at a
//!    time, each retried), then the entry. A crash leaves entries that the
//!    next start finishes ([`Coffer::gc_recover`]).
//! 4. **Repack.** On disk, small blocks live in packs: a pack whose live
//!    fraction fell below `[gc] repack_below` has its live records copied to
//!    the archive's current pack (durably), the index switched (durably),
//!    and then the old pack destroyed through the gate, which refuses while
//!    any record still points into it.
//!
//! Reference lists a crashed commit left behind, and pins of sessions closed
//! before the cutoff, are dropped on the way (lists only when seen orphaned
//! a grace apart: a commit in flight writes its list before its record).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use coffer_meta::{BlockRecord, SessionStatus};
use coffer_storage::Location;
use coffer_types::wire::{GcReport, GcStatus};
use coffer_types::{BlockId, Name, UnixMillis};

use crate::access::{Permission, Principal};
use crate::destroy::{Doomed, GateCtx, Verdict};
use crate::workers::{StepFuture, Worker};
use crate::{Coffer, Result};

/// Record header size in a pack (magic, length, id).
const PACK_HEADER: u64 = 40;
/// Blocks condemned per transaction.
const CONDEMN_BATCH: usize = 256;
/// Blocks whose records are destroyed before the journal is made durable
/// and their bytes deleted.
const SWEEP_BATCH: usize = 128;
/// Blocks whose bytes are deleted together, once their journal entries are
/// durable (one S3 `DeleteObjects` request holds a thousand keys).
const DELETE_BATCH: usize = 1000;
/// Live records copied out of a pack at a time.
const REPACK_BATCH: usize = 256;
/// Times an archive's mark starts over when commits keep racing it.
const RESTARTS: usize = 5;

/// The `[gc]` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcSettings {
    /// Blocks stored (or pinned by a session active) more recently are
    /// never swept.
    pub grace: Duration,
    /// Packs whose live share of bytes falls below this are rewritten.
    pub repack_below: f64,
    /// While uploads run, the collector rests this many times as long as
    /// each piece of its work took (0: it never rests).
    pub rest_factor: u32,
}

impl Default for GcSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(24 * 3600),
            repack_below: 0.5,
            rest_factor: REST_FACTOR,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct GcState {
    settings: RwLock<GcSettings>,
    running: AtomicBool,
    lock: tokio::sync::Mutex<()>,
    /// Reference-list owners with no backup, and when first seen so.
    orphans: Mutex<HashMap<(Name, Name), UnixMillis>>,
    metrics: Mutex<GcReport>,
    /// Uploads in progress: while any runs, the collector rests between
    /// batches (`rest_factor` times as long as the batch took), so backups
    /// keep most of the machine and of the metadata store's transaction
    /// lock.
    pub(crate) uploads: std::sync::atomic::AtomicUsize,
    /// Set by [`Coffer::hold_gc`]: the collector waits at its next rest.
    held: AtomicBool,
}

/// Counts an upload in progress for as long as it lives.
pub(crate) struct UploadGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The default rest after a piece of work while uploads run, in times the
/// work took: the collector works at most a seventh of the time. On a
/// 2-core machine any work on the second core, even a thread that only
/// spins at nice 19, costs 16 concurrent uploads about a third of their
/// throughput (bench/README.md), so its share of the time is what counts.
pub const REST_FACTOR: u32 = 6;
/// The longest rest after one piece of work.
const MAX_REST: Duration = Duration::from_secs(2);
/// How often a held collection looks whether it may go on.
const HELD_POLL: Duration = Duration::from_millis(5);

/// Totals since start, for the metrics.
#[derive(Debug, Clone, Default)]
pub struct GcMetrics {
    pub runs: u64,
    pub marked: u64,
    pub swept: u64,
    pub swept_bytes: u64,
    pub refused: u64,
    pub packs_rewritten: u64,
    pub pack_bytes_reclaimed: u64,
}

impl Coffer {
    pub(crate) fn upload_started(&self) -> UploadGuard<'_> {
        self.gc.uploads.fetch_add(1, Ordering::SeqCst);
        UploadGuard(&self.gc.uploads)
    }

    /// How long to rest after work that started at `started`: nothing
    /// while no upload runs, else the work's time times the factor.
    pub(crate) fn rest_after(&self, started: std::time::Instant) -> Duration {
        if self.gc.uploads.load(Ordering::SeqCst) == 0 {
            return Duration::ZERO;
        }
        (started.elapsed() * self.gc_settings().rest_factor).min(MAX_REST)
    }

    /// Hold a running collection at its next rest (between two batches,
    /// holding no lock an upload waits for), or let it go on. The GC
    /// benchmark alternates upload rounds with the collection going and
    /// held, so both see the same disk and index (bench/README.md).
    pub fn hold_gc(&self, held: bool) {
        self.gc.held.store(held, Ordering::SeqCst);
    }

    /// On a blocking thread, between pages of the mark: rest after the
    /// page that started at `started` (and start the next).
    fn pace_blocking(&self, started: &mut std::time::Instant) {
        let rest = self.rest_after(*started);
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
        while self.gc.held.load(Ordering::SeqCst) {
            std::thread::sleep(HELD_POLL);
        }
        *started = std::time::Instant::now();
    }

    /// After a batch that started at `started`: rest while uploads run.
    async fn pace(&self, started: std::time::Instant) {
        let rest = self.rest_after(started);
        if !rest.is_zero() {
            tokio::time::sleep(rest).await;
        }
        while self.gc.held.load(Ordering::SeqCst) {
            tokio::time::sleep(HELD_POLL).await;
        }
    }

    pub fn set_gc_settings(&self, s: GcSettings) {
        *self.gc.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    pub(crate) fn gc_settings(&self) -> GcSettings {
        *self.gc.settings.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Totals of every run since start.
    pub fn gc_metrics(&self) -> GcMetrics {
        let m = self.gc.metrics.lock().unwrap_or_else(|e| e.into_inner());
        GcMetrics {
            runs: m.archives,
            marked: m.marked,
            swept: m.swept,
            swept_bytes: m.swept_bytes,
            refused: m.refused,
            packs_rewritten: m.packs_rewritten,
            pack_bytes_reclaimed: m.pack_bytes_reclaimed,
        }
    }

    pub async fn gc_status(&self, p: &Principal) -> Result<GcStatus> {
        self.require(p, Permission::ReadServer, "gc.status").await?;
        let s = self.gc_settings();
        Ok(GcStatus {
            grace_secs: s.grace.as_secs(),
            repack_below: s.repack_below,
            running: self.gc.running.load(Ordering::SeqCst),
            last: self
                .meta
                .gc_last_run()?
                .and_then(|v| serde_json::from_value(v).ok()),
        })
    }

    /// `coffer admin gc run [--dry-run]`.
    pub async fn gc_run(&self, p: &Principal, dry_run: bool) -> Result<GcReport> {
        let perm = if dry_run {
            Permission::ReadServer
        } else {
            Permission::ManageServer
        };
        self.require(p, perm, "gc.run").await?;
        self.collect(p, dry_run).await
    }

    /// Finish what an interrupted run left in the journals: delete the
    /// bytes of every journaled block (idempotent), and forget interrupted
    /// pack rewrites (the old pack stays until a run finds every record
    /// moved out of it). Run at start, before serving.
    pub async fn gc_recover(&self) -> Result<u64> {
        let mut n = 0;
        let mut by_archive: HashMap<Name, Vec<(BlockId, Vec<u8>)>> = HashMap::new();
        for e in self.meta.journal()? {
            by_archive
                .entry(e.archive)
                .or_default()
                .push((e.id, e.location));
        }
        for (archive, blocks) in by_archive {
            for chunk in blocks.chunks(DELETE_BATCH) {
                let failed = self.destroy_bytes_many(&archive, chunk).await?;
                n += chunk.len() as u64 - failed;
            }
        }
        for j in self.meta.pack_journal()? {
            self.meta.pack_journal_done(&j.archive, j.pack)?;
        }
        if n > 0 {
            self.meta.durable().await?;
            self.system_audit("gc.recovered", "gc", [("blocks", n.to_string())])?;
            self.meta.durable().await?;
            tracing::warn!(
                blocks = n,
                "finished the destruction of blocks an interrupted collection journaled"
            );
        }
        Ok(n)
    }

    /// One collection over every archive.
    pub(crate) async fn collect(&self, p: &Principal, dry_run: bool) -> Result<GcReport> {
        let _one = self.gc.lock.lock().await;
        self.gc.running.store(true, Ordering::SeqCst);
        let r = self.collect_inner(p, dry_run).await;
        self.gc.running.store(false, Ordering::SeqCst);
        let report = r?;
        if !dry_run {
            self.meta
                .set_gc_last_run(&serde_json::to_value(&report).unwrap_or_default())?;
            let d = self.draft(
                p,
                "gc.run",
                "gc",
                [
                    ("marked", report.marked.to_string()),
                    ("swept", report.swept.to_string()),
                    ("swept_bytes", report.swept_bytes.to_string()),
                    ("refused", report.refused.to_string()),
                    ("packs_rewritten", report.packs_rewritten.to_string()),
                    ("cutoff", crate::format_time(report.cutoff)),
                ],
            );
            self.meta.audit_append(&d)?;
            self.meta.durable().await?;
            let mut m = self.gc.metrics.lock().unwrap_or_else(|e| e.into_inner());
            m.archives += 1;
            m.marked += report.marked;
            m.swept += report.swept;
            m.swept_bytes += report.swept_bytes;
            m.refused += report.refused;
            m.packs_rewritten += report.packs_rewritten;
            m.pack_bytes_reclaimed += report.pack_bytes_reclaimed;
        }
        Ok(report)
    }

    async fn collect_inner(&self, p: &Principal, dry_run: bool) -> Result<GcReport> {
        let settings = self.gc_settings();
        if !dry_run {
            self.persist_compliance()?;
            self.meta.durable().await?;
            // Deletes an earlier run could not finish.
            self.gc_recover().await?;
        }
        let now = self.compliance_now();
        let cutoff = now.saturating_sub(settings.grace.as_millis() as u64);
        let mut report = GcReport {
            dry_run,
            started_at: now,
            cutoff,
            ..GcReport::default()
        };
        for archive in self.meta.archive_ids()? {
            report.archives += 1;
            let mut done = false;
            for _ in 0..RESTARTS {
                if self
                    .collect_archive(p, &archive, cutoff, dry_run, &settings, &mut report)
                    .await?
                {
                    done = true;
                    break;
                }
                report.restarted += 1;
            }
            if !done {
                tracing::info!(archive = %archive, "backups kept committing during collection; the archive waits for the next run");
            }
        }
        if !dry_run {
            let older = std::time::SystemTime::now()
                .checked_sub(settings.grace.max(Duration::from_secs(60)))
                .unwrap_or(std::time::UNIX_EPOCH);
            report.uploads_aborted = self.storage.abort_stale_uploads(older).await?;
        }
        report.finished_at = self.compliance_now();
        Ok(report)
    }

    /// Collect one archive; false when a commit raced the mark (start over).
    async fn collect_archive(
        &self,
        p: &Principal,
        archive: &Name,
        cutoff: UnixMillis,
        dry_run: bool,
        settings: &GcSettings,
        report: &mut GcReport,
    ) -> Result<bool> {
        let mark_started = std::time::Instant::now();
        let commits = self.meta.epochs(archive)?.commits;
        let a = archive.clone();
        let now = self.compliance_now();
        let grace_ms = settings.grace.as_millis() as u64;
        let orphans_seen: HashMap<(Name, Name), UnixMillis> = self
            .gc
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let core = self.clone();
        let mark = self
            .meta_blocking("mark blocks", move |m| {
                let mut page = std::time::Instant::now();
                let mut pace = || core.pace_blocking(&mut page);
                mark(
                    m,
                    &a,
                    cutoff,
                    now,
                    grace_ms,
                    dry_run,
                    &orphans_seen,
                    &mut pace,
                )
            })
            .await?;
        {
            let mut o = self.gc.orphans.lock().unwrap_or_else(|e| e.into_inner());
            o.retain(|(ar, _), _| ar != archive);
            for (b, t) in &mark.orphans_waiting {
                o.insert((archive.clone(), b.clone()), *t);
            }
        }
        report.orphans_dropped += mark.orphans_dropped;
        report.marked += mark.candidates.len() as u64;
        report.mark_ms += mark_started.elapsed().as_millis() as u64;
        let sweep_started = std::time::Instant::now();
        if dry_run {
            report.swept += mark.candidates.len() as u64;
            report.swept_bytes += mark.candidates.iter().map(|(_, r)| r.size).sum::<u64>();
            return Ok(true);
        }
        // Condemn under the epoch the mark was read at.
        let ids: Vec<BlockId> = mark.candidates.iter().map(|(id, _)| *id).collect();
        for chunk in ids.chunks(CONDEMN_BATCH) {
            let started = std::time::Instant::now();
            if !self.meta.condemn(archive, chunk, commits, now)? {
                self.meta.uncondemn_all(archive)?;
                return Ok(false);
            }
            self.pace(started).await;
        }
        // Sweep, a batch at a time: records (and journal) first, durable,
        // then bytes.
        let mut ctx = GateCtx::default();
        let mut live_packs = mark.pack_bytes;
        let mut pending: Vec<(BlockId, Vec<u8>)> = Vec::new();
        for chunk in mark.candidates.chunks(SWEEP_BATCH) {
            let started = std::time::Instant::now();
            let mut bytes: Vec<(BlockId, Vec<u8>)> = Vec::new();
            let mut freed = 0u64;
            let ids: Vec<BlockId> = chunk.iter().map(|(id, _)| *id).collect();
            let done = self.destroy_blocks(p, &mut ctx, archive, &ids, commits, cutoff)?;
            for ((id, cand), d) in chunk.iter().zip(done) {
                match d {
                    Some(rec) => {
                        report.swept += 1;
                        report.swept_bytes += rec.size;
                        freed += rec.size;
                        bytes.push((*id, rec.location));
                    }
                    None => {
                        report.refused += 1;
                        // It stays: it counts in its pack's live bytes.
                        if let Some(Location::Packed { pack, .. }) =
                            Location::decode(&cand.location)
                        {
                            *live_packs.entry(pack).or_default() += cand.size + PACK_HEADER;
                        }
                    }
                }
            }
            if freed > 0 {
                self.uncount_stored(archive, freed)?;
            }
            // A packed block's bytes go with its pack's rewrite (it has no
            // journal entry); the others' once enough wait.
            pending.extend(bytes.into_iter().filter(|(_, loc)| {
                !matches!(Location::decode(loc), Some(Location::Packed { .. }))
            }));
            if pending.len() >= DELETE_BATCH {
                self.sweep_bytes(archive, &mut pending).await?;
            }
            self.pace(started).await;
        }
        self.sweep_bytes(archive, &mut pending).await?;
        self.meta.durable().await?;
        self.meta.uncondemn_all(archive)?;
        report.sweep_ms += sweep_started.elapsed().as_millis() as u64;
        if self.storage.packs() {
            let started = std::time::Instant::now();
            self.repack_archive(p, archive, &live_packs, settings, report)
                .await?;
            report.repack_ms += started.elapsed().as_millis() as u64;
        }
        Ok(true)
    }

    /// Delete the bytes of the swept blocks in `pending`: their journal
    /// entries are made durable first, then the bytes go, then the entries
    /// (a failed delete keeps its entry for the next run or start; cleared
    /// entries need no flush of their own, as one found again deletes
    /// nothing that is not gone).
    async fn sweep_bytes(
        &self,
        archive: &Name,
        pending: &mut Vec<(BlockId, Vec<u8>)>,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        self.meta.durable().await?;
        self.destroy_bytes_many(archive, pending).await?;
        pending.clear();
        Ok(())
    }

    /// Rewrite the archive's packs whose live fraction is below the
    /// threshold.
    async fn repack_archive(
        &self,
        p: &Principal,
        archive: &Name,
        live: &HashMap<u64, u64>,
        settings: &GcSettings,
        report: &mut GcReport,
    ) -> Result<()> {
        let packs = self.storage.pack_sizes(archive.as_str()).await?;
        if packs.is_empty() {
            return Ok(());
        }
        for (pack, size) in packs {
            if size == 0 || self.storage.pack_open(archive.as_str(), pack) {
                continue;
            }
            let l = live.get(&pack).copied().unwrap_or(0);
            if (l as f64) >= settings.repack_below * size as f64 {
                continue;
            }
            self.meta
                .pack_journal_begin(&coffer_meta::PackJournalRecord {
                    archive: archive.clone(),
                    pack,
                    started_at: self.compliance_now(),
                })?;
            let records = self.storage.pack_records(archive.as_str(), pack).await?;
            let mut copied = 0u64;
            // A pack with no live bytes has nothing to copy (the gate still
            // checks every record before it goes). The live records go in
            // batches: read and checked one by one, then handed to the
            // packer together, so that they share its group commits (one
            // at a time, each waited for a commit of its own, which under
            // uploads is a commit of theirs).
            let to_copy = if l == 0 { &records[..0] } else { &records[..] };
            for batch in to_copy.chunks(REPACK_BATCH) {
                let started = std::time::Instant::now();
                let mut moving = Vec::with_capacity(batch.len());
                for (id, offset, _len) in batch {
                    let Some(rec) = self.meta.block(archive, id)? else {
                        continue;
                    };
                    let from = Location::Packed {
                        pack,
                        offset: *offset,
                    };
                    if Location::decode(&rec.location) != Some(from) {
                        continue;
                    }
                    let bytes = self.storage.read(archive.as_str(), id, from).await?;
                    if BlockId::of(&bytes) != *id {
                        // A damaged copy is not carried over as good: record
                        // it, and its device sends it again.
                        self.meta.mark_damaged(
                            archive,
                            id,
                            coffer_meta::Damage::Corrupt,
                            self.now(),
                        )?;
                        continue;
                    }
                    moving.push((*id, rec.size, from, bytes));
                }
                let copies = futures::future::join_all(moving.iter().map(|(id, _, _, bytes)| {
                    self.storage.repack(archive.as_str(), *id, bytes.clone())
                }))
                .await;
                for ((id, size, from, _), to) in moving.iter().zip(copies) {
                    if self
                        .meta
                        .move_block(archive, id, &from.encode(), &to?.encode())?
                    {
                        copied += size + PACK_HEADER;
                    }
                }
                self.pace(started).await;
            }
            // The index switch is durable before the old pack can go.
            self.meta.durable().await?;
            let ids: Vec<BlockId> = records.iter().map(|(id, _, _)| *id).collect();
            let what = Doomed::Pack {
                archive,
                pack,
                records: &ids,
            };
            match self.destroy(p, &mut GateCtx::default(), what, "pack rewrite")? {
                (Verdict::Allow, _) => {
                    self.destroy_pack_bytes(archive, pack).await?;
                    report.packs_rewritten += 1;
                    report.pack_bytes_reclaimed += size.saturating_sub(copied);
                }
                (Verdict::Deny { .. }, _) => {
                    report.refused += 1;
                    self.meta.pack_journal_done(archive, pack)?;
                }
            }
            self.meta.durable().await?;
        }
        Ok(())
    }

    /// The `gc` worker.
    pub fn gc_worker(&self, every: Duration) -> Arc<dyn Worker> {
        Arc::new(GcWorker {
            core: self.clone(),
            every,
        })
    }
}

/// Whether a session's pins keep its blocks from a sweep with `cutoff`:
/// open, or aborted and active since the cutoff. (A commit releases its
/// pins: what it uploaded is referenced, or garbage.)
pub(crate) fn pins_protect(s: &coffer_meta::SessionRecord, cutoff: UnixMillis) -> bool {
    match s.state {
        SessionStatus::Open => true,
        SessionStatus::Aborted => s.last_activity >= cutoff,
        SessionStatus::Committed => false,
    }
}

/// A set of block ids built by appending (backups share most of their
/// blocks, so far more are added than are distinct), read as one sorted
/// list. Added ids wait in a buffer that is sorted and merged in once it is
/// as long as the set: each id costs a logarithmic share of sorting, and
/// memory stays within about twice the distinct ids.
#[derive(Default)]
struct SortedIds {
    sorted: Vec<BlockId>,
    pending: Vec<BlockId>,
}

impl SortedIds {
    fn extend(&mut self, ids: impl IntoIterator<Item = BlockId>) {
        self.pending.extend(ids);
        if self.pending.len() >= self.sorted.len().max(1 << 16) {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let mut p = std::mem::take(&mut self.pending);
        p.sort_unstable();
        p.dedup();
        let old = std::mem::take(&mut self.sorted);
        let mut out = Vec::with_capacity(old.len() + p.len());
        let (mut a, mut b) = (old.into_iter().peekable(), p.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(x), Some(y)) if x > y => b.next(),
                (Some(_), Some(_)) => {
                    b.next();
                    a.next()
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            out.extend(next);
        }
        self.sorted = out;
    }

    fn finish(mut self) -> Vec<BlockId> {
        self.merge();
        self.sorted
    }
}

/// What the mark found in one archive.
struct Mark {
    candidates: Vec<(BlockId, BlockRecord)>,
    /// Bytes (record headers included) per pack of the blocks that stay:
    /// the live fraction the pack rewrite starts from. Candidates a sweep
    /// refuses are added back; blocks stored after the mark go to the pack
    /// being appended to, which is not rewritten. An estimate for choosing
    /// packs only: the gate checks every record before a pack goes.
    pack_bytes: HashMap<u64, u64>,
    orphans_dropped: u64,
    /// Orphaned reference lists seen, not dropped yet, with when first seen.
    orphans_waiting: Vec<(Name, UnixMillis)>,
}

/// The mark of one archive (blocking: plain reads of the metadata).
#[allow(clippy::too_many_arguments)]
fn mark(
    m: &coffer_meta::MetaStore,
    archive: &Name,
    cutoff: UnixMillis,
    now: UnixMillis,
    grace_ms: u64,
    dry_run: bool,
    orphans_seen: &HashMap<(Name, Name), UnixMillis>,
    pace: &mut dyn FnMut(),
) -> Result<Mark> {
    // The live set as a sorted list, merged against the block records
    // (which are scanned in id order): sequential work, where a hash set of
    // a large archive's blocks misses the processor's caches at every probe.
    let mut live = SortedIds::default();
    let backups: HashSet<Name> = m.backups(archive)?.into_iter().map(|b| b.id).collect();
    let mut orphans_dropped = 0;
    let mut orphans_waiting = Vec::new();
    for (n, owner) in m.ref_owners(archive)?.into_iter().enumerate() {
        if n % 64 == 63 {
            pace();
        }
        if !backups.contains(&owner) {
            // A commit in flight, or one a crash interrupted: live this
            // time; dropped once seen orphaned a grace apart.
            let first = orphans_seen
                .get(&(archive.clone(), owner.clone()))
                .copied()
                .unwrap_or(now);
            if !dry_run && now.saturating_sub(first) >= grace_ms && first != now {
                m.drop_refs(archive, &owner)?;
                orphans_dropped += 1;
                continue;
            }
            orphans_waiting.push((owner.clone(), first));
        }
        for chunk in m.backup_block_chunks(archive, &owner) {
            live.extend(chunk?);
        }
    }
    live.extend(m.named_blocks(archive)?);
    // Sessions whose pins protect blocks: open, or aborted and active since
    // the cutoff (a commit releases its pins: its blocks are referenced).
    let mut live_sessions = Vec::new();
    for s in m.sessions(archive)? {
        if pins_protect(&s, cutoff) {
            live_sessions.push(s.id);
        } else if !dry_run
            && s.state == SessionStatus::Aborted
            && m.pinned_count(archive, &s.id)? > 0
        {
            orphans_dropped += m.release_pins(archive, &s.id)?;
        }
    }
    for s in &live_sessions {
        live.extend(m.pins_of(archive, s)?);
    }
    let live = live.finish();
    let mut candidates = Vec::new();
    let mut pack_bytes: HashMap<u64, u64> = HashMap::new();
    let mut next = 0usize;
    let mut after = None;
    loop {
        let page = m.archive_blocks_page(archive, after.as_ref(), 4096)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        pace();
        for (id, rec) in page {
            while live.get(next).is_some_and(|l| *l < id) {
                next += 1;
            }
            let is_live = live.get(next) == Some(&id);
            if !is_live && rec.stored_at < cutoff {
                candidates.push((id, rec));
            } else if let Some(Location::Packed { pack, .. }) = Location::decode(&rec.location) {
                *pack_bytes.entry(pack).or_default() += rec.size + PACK_HEADER;
            }
        }
    }
    Ok(Mark {
        candidates,
        pack_bytes,
        orphans_dropped,
        orphans_waiting,
    })
}

struct GcWorker {
    core: Coffer,
    every: Duration,
}

impl Worker for GcWorker {
    fn name(&self) -> &str {
        "gc"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_delay(&self) -> Duration {
        self.every.min(Duration::from_secs(300))
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let r = self
                .core
                .collect(&Principal::system(), false)
                .await
                .map_err(|e| format!("garbage collection: {e}"))?;
            if r.swept > 0 || r.packs_rewritten > 0 {
                tracing::info!(
                    swept = r.swept,
                    bytes = r.swept_bytes,
                    packs = r.packs_rewritten,
                    reclaimed = r.pack_bytes_reclaimed,
                    "garbage collection"
                );
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SortedIds;
    use coffer_types::BlockId;

    /// Many overlapping backups' blocks, added in pieces across several
    /// merges: the result is the distinct ids, sorted, as a set would have
    /// them.
    #[test]
    fn sorted_ids_hold_each_id_once_in_order() {
        let id = |n: u32| BlockId::of(&n.to_le_bytes());
        let mut s = SortedIds::default();
        let mut want = std::collections::BTreeSet::new();
        for backup in 0..40u32 {
            // Each backup shares most blocks with the ones before.
            let ids: Vec<BlockId> = (backup * 1_000..backup * 1_000 + 9_000).map(id).collect();
            want.extend(ids.iter().copied());
            s.extend(ids);
        }
        let got = s.finish();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().copied().eq(want.into_iter()));
    }
}
