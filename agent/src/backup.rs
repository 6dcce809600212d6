//! `coffer-agent backup`: walk, chunk, seal, ask, upload, commit.
//!
//! A blocking thread walks the paths, reads files (or reuses the chunk list
//! of an unchanged file from the local cache), splits them with
//! content-defined chunking and seals each chunk; the async side asks the
//! server which blocks it lacks in batches and keeps `streams` uploads in
//! flight on one HTTP/2 connection. Memory is bounded by the channel between
//! the two, the batch, and the uploads in flight. Everything is idempotent:
//! a killed backup run again re-sends only what the server does not hold.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use coffer_types::wire::{BUNDLE_MAX_BLOCKS, BUNDLE_RECORD_HEADER};
use coffer_types::BlockId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::api::Api;
use crate::crypto::Keys;
use crate::manifest::{Entry, Kind, Manifest, ManifestRoot, PathRepr, Stats, PART};
use crate::progress::Progress;

/// Content-defined chunking: about 1 MiB on average, bounded.
const CDC_MIN: u32 = 256 << 10;
const CDC_AVG: u32 = 1 << 20;
const CDC_MAX: u32 = 4 << 20;
/// Blocks up to this size are sent in bundles (one request for many small
/// files' blocks) of up to `BUNDLE_BYTES`; larger ones in a request each.
const BUNDLE_BLOCK_MAX: usize = 256 << 10;
const BUNDLE_BYTES: usize = 4 << 20;
/// Ask the server about this many blocks at once.
const BATCH_BLOCKS: usize = 512;
const BATCH_BYTES: usize = 16 << 20;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    pub streams: usize,
    pub cache_file: PathBuf,
    pub keep_deleted: KeepDeleted,
}

/// How long a file gone from the selection stays in the backups that
/// follow (`device_defaults.keep_deleted`): a legal hold's preservation
/// policy sets it to forever on the custodian's devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeepDeleted {
    /// Not carried: a deleted file lives on only in the older backups the
    /// server's retention keeps.
    #[default]
    Off,
    /// Carried while it has been gone for less than this.
    For(Duration),
    Forever,
}

impl KeepDeleted {
    /// From the setting's value: seconds, `0` (off), or `null` / `"forever"`.
    pub fn from_value(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(0) | None => Self::Off,
                Some(s) => Self::For(Duration::from_secs(s)),
            },
            serde_json::Value::String(t) if t == "forever" => Self::Forever,
            _ => Self::Off,
        }
    }

    fn keeps(self, deleted_ms: u64, now_ms: u64) -> bool {
        match self {
            Self::Off => false,
            Self::Forever => true,
            Self::For(d) => now_ms.saturating_sub(deleted_ms) < d.as_millis() as u64,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub backup: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub skipped_paths: Vec<String>,
    /// Files gone from the selection, kept in this backup as deleted.
    pub deleted_kept: u64,
    pub files_read: u64,
    pub files_from_cache: u64,
    pub blocks_uploaded: u64,
    pub bytes_uploaded: u64,
    pub seconds: f64,
}

/// The local cache: for each file path, what it was and its chunk list, so
/// an unchanged file is not read again.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    files: HashMap<String, CachedFile>,
    /// Files gone from the selection and still carried (keep_deleted), by
    /// the same key: their last entry, with when they went.
    #[serde(default)]
    deleted: HashMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFile {
    size: u64,
    mtime_sec: i64,
    mtime_nsec: u32,
    ino: u64,
    ctime_sec: i64,
    chunks: Vec<BlockId>,
    /// Permission bits (for a deleted file's entry).
    #[serde(default = "default_mode")]
    mode: u32,
}

fn default_mode() -> u32 {
    0o644
}

/// The files of the previous backup that are not in this one, as deleted
/// entries (stamped `now_ms` when newly gone; those already carried keep
/// their time), while `keep` keeps them.
fn carry_deleted(
    previous: &[Entry],
    present: &HashSet<Vec<u8>>,
    keep: KeepDeleted,
    now_ms: u64,
) -> Vec<Entry> {
    if keep == KeepDeleted::Off {
        return Vec::new();
    }
    let mut out: Vec<Entry> = previous
        .iter()
        .filter(|e| e.kind == Kind::File && !present.contains(&e.path.bytes()))
        .map(|e| Entry {
            deleted_ms: Some(e.deleted_ms.unwrap_or(now_ms)),
            ..e.clone()
        })
        .filter(|e| keep.keeps(e.deleted_ms.unwrap_or(now_ms), now_ms))
        .collect();
    out.sort_by_key(|e| e.path.bytes());
    out.dedup_by_key(|e| e.path.bytes());
    out
}

/// The previous backup's files, as the local cache remembers them: what
/// [`carry_deleted`] starts from when the previous manifest cannot be read.
fn cached_entries(cache: &Cache) -> Vec<Entry> {
    let mut out: Vec<Entry> = cache.deleted.values().cloned().collect();
    for (k, c) in &cache.files {
        let Ok(p) = hex::decode(k) else { continue };
        out.push(Entry {
            path: PathRepr::from_bytes(&p),
            kind: Kind::File,
            mode: c.mode,
            mtime_sec: c.mtime_sec,
            mtime_nsec: c.mtime_nsec,
            size: c.size,
            target: None,
            chunks: c.chunks.clone(),
            deleted_ms: None,
        });
    }
    out
}

/// The entries of the archive's newest backup (none yet: empty).
async fn previous_entries(api: &Api, keys: &Keys) -> anyhow::Result<Vec<Entry>> {
    let Some(latest) = api.backups().await?.pop() else {
        return Ok(Vec::new());
    };
    let b = api.backup(latest.backup.as_str()).await?;
    Ok(crate::restore::manifest(api, keys, &b).await?.entries)
}

impl Cache {
    fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// What the reading thread sends.
enum Event {
    /// Entry `i` is ready (no chunks to come, or all sent).
    Entry(usize, Entry),
    Chunk(BlockId, Bytes, u64),
    /// A file of this many bytes was unchanged: its chunks (these) come
    /// from the cache.
    Cached(u64, Vec<BlockId>),
    Skipped(String, String),
    Planned {
        files: u64,
        bytes: u64,
    },
}

pub async fn run(
    api: &Api,
    keys: Arc<Keys>,
    key_block: BlockId,
    opts: Options,
    progress: Progress,
) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let session = api.open_session().await?.session.to_string();
    let cache = Arc::new(Cache::load(&opts.cache_file));
    let (tx, mut rx) = mpsc::channel::<Event>(16);
    let reader = {
        let keys = keys.clone();
        let cache = cache.clone();
        let paths = opts.paths.clone();
        let excludes = build_excludes(&opts.excludes)?;
        let one_fs = opts.one_file_system;
        tokio::task::spawn_blocking(move || {
            read_tree(&paths, &excludes, one_fs, &keys, &cache, &tx)
        })
    };

    let mut up = Uploader::new(api.clone(), session.clone(), opts.streams);
    let mut reused = ReusedCheck::default();
    let mut entries: Vec<Option<Entry>> = Vec::new();
    let mut skipped = Vec::new();
    let (mut planned_files, mut planned_bytes, mut done_bytes, mut done_files) =
        (0u64, 0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Planned { files, bytes } => {
                planned_files = files;
                planned_bytes = bytes;
                progress.plan(files, bytes);
            }
            Event::Chunk(id, blob, plain) => {
                up.add(id, blob).await?;
                done_bytes += plain;
                progress.bytes(done_bytes, up.uploaded_bytes);
            }
            Event::Cached(n, chunks) => {
                reused.add(api, &session, chunks);
                done_bytes += n;
                progress.bytes(done_bytes, up.uploaded_bytes);
            }
            Event::Entry(i, e) => {
                if e.kind == Kind::File {
                    done_files += 1;
                }
                if entries.len() <= i {
                    entries.resize(i + 1, None);
                }
                entries[i] = Some(e);
                progress.files(done_files, planned_files);
            }
            Event::Skipped(path, why) => {
                progress.warn(&format!("skipped {path}: {why}"));
                skipped.push(path);
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            let pct = if planned_bytes == 0 {
                0.0
            } else {
                (done_bytes as f64 / planned_bytes as f64 * 100.0).min(99.9)
            };
            // Progress is advisory: a failed report does not stop the backup.
            let _ = api.progress(&session, pct, done_bytes, done_files).await;
        }
    }
    let read_stats = reader.await.context("the reading thread failed")??;

    let mut entries: Vec<Entry> = entries.into_iter().flatten().collect();
    entries.sort_by_key(|e| e.path.bytes());

    // Files of the previous backup gone from this one, kept as deleted
    // entries: their chunks are asked about (and pinned) like a cached
    // file's. The previous backup's own manifest says what it held (the
    // local cache may be gone or stale); the cache stands in only when the
    // manifest cannot be read.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let previous = if opts.keep_deleted == KeepDeleted::Off {
        Vec::new()
    } else {
        match previous_entries(api, &keys).await {
            Ok(p) => p,
            Err(e) => {
                progress.warn(&format!(
                    "could not read the previous backup's manifest ({e:#}): deleted files are \
                     carried as the local cache remembers them"
                ));
                cached_entries(&cache)
            }
        }
    };
    let present: HashSet<Vec<u8>> = entries.iter().map(|e| e.path.bytes()).collect();
    let mut carried = carry_deleted(&previous, &present, opts.keep_deleted, now_ms);
    for e in &carried {
        reused.add(api, &session, e.chunks.clone());
    }

    // Chunks reused from the cache must still be on the server: they were
    // asked about while the tree was read (which also pins them to this
    // session); re-read any file that lost one.
    let missing = reused.finish(api, &session).await?;
    if !missing.is_empty() {
        for e in entries
            .iter_mut()
            .filter(|e| e.chunks.iter().any(|c| missing.contains(c)))
        {
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(
                &[b"/".as_slice(), &e.path.bytes()].concat(),
            ));
            e.chunks = reread(&path, &keys, &mut up).await?;
        }
        // A deleted file cannot be read again: one whose blocks the server
        // lost is no longer carried.
        carried.retain(|e| {
            let whole = !e.chunks.iter().any(|c| missing.contains(c));
            if !whole {
                progress.warn(&format!(
                    "deleted file {} is no longer kept: the server lost some of its blocks",
                    e.path.display()
                ));
            }
            whole
        });
    }

    let stats = Stats {
        files: entries.iter().filter(|e| e.kind == Kind::File).count() as u64,
        dirs: entries.iter().filter(|e| e.kind == Kind::Dir).count() as u64,
        bytes: entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum(),
        skipped: skipped.len() as u64,
        deleted: carried.len() as u64,
    };
    let mut kept = Cache::default();
    for e in &carried {
        kept.deleted.insert(hex::encode(e.path.bytes()), e.clone());
    }
    entries.extend(carried);
    entries.sort_by_key(|e| e.path.bytes());
    let manifest = Manifest {
        version: 1,
        created_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        host: std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        roots: opts
            .paths
            .iter()
            .map(|p| PathRepr::from_bytes(p.as_os_str().as_bytes()))
            .collect(),
        stats: stats.clone(),
        entries,
    };
    let json = serde_json::to_vec(&manifest)?;
    let mut parts = Vec::new();
    for piece in json.chunks(PART) {
        let blob = keys.seal(piece);
        let id = BlockId::of(&blob);
        up.add(id, blob.into()).await?;
        parts.push(id);
    }
    let root = keys.seal(&serde_json::to_vec(&ManifestRoot {
        version: 1,
        parts: parts.clone(),
    })?);
    let root_id = BlockId::of(&root);
    up.add(root_id, root.into()).await?;
    up.finish().await?;

    let mut all: Vec<BlockId> = manifest
        .entries
        .iter()
        .flat_map(|e| e.chunks.iter().copied())
        .collect();
    all.extend(parts);
    all.push(key_block);
    all.sort();
    all.dedup();
    // Remember what was read, for the next run: saved while the commit is
    // on its way (a cache entry only spares a read; its chunks are checked
    // with the server before they are reused).
    let mut new_cache = kept;
    for e in manifest
        .entries
        .iter()
        .filter(|e| e.kind == Kind::File && e.deleted_ms.is_none())
    {
        if let Some(c) = read_stats.identity.get(&e.path.bytes()) {
            new_cache.files.insert(
                hex::encode(e.path.bytes()),
                CachedFile {
                    chunks: e.chunks.clone(),
                    ..c.clone()
                },
            );
        }
    }
    let cache_file = opts.cache_file.clone();
    let saved = tokio::task::spawn_blocking(move || new_cache.save(&cache_file));
    let b = api
        .commit(&session, root_id, &all, stats.files, stats.bytes)
        .await?;
    match saved.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => progress.warn(&format!("could not save the file cache: {e:#}")),
        Err(e) => progress.warn(&format!("could not save the file cache: {e}")),
    }
    progress.finish();
    Ok(Summary {
        backup: b.backup.to_string(),
        files: stats.files,
        dirs: stats.dirs,
        bytes: stats.bytes,
        skipped: stats.skipped,
        skipped_paths: skipped,
        deleted_kept: stats.deleted,
        files_read: read_stats.read,
        files_from_cache: read_stats.reused.len() as u64,
        blocks_uploaded: up.uploaded_blocks,
        bytes_uploaded: up.uploaded_bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Chunks reused from the cache, asked about in batches while the tree is
/// still being read, so an unchanged tree costs no round trip at the end.
#[derive(Default)]
struct ReusedCheck {
    seen: HashSet<BlockId>,
    pending: Vec<BlockId>,
    asks: JoinSet<anyhow::Result<Vec<BlockId>>>,
}

impl ReusedCheck {
    /// Ask this many at a time.
    const BATCH: usize = 2048;

    fn add(&mut self, api: &Api, session: &str, chunks: Vec<BlockId>) {
        self.pending
            .extend(chunks.into_iter().filter(|c| self.seen.insert(*c)));
        if self.pending.len() >= Self::BATCH {
            self.ask(api, session);
        }
    }

    fn ask(&mut self, api: &Api, session: &str) {
        if self.pending.is_empty() {
            return;
        }
        let (ids, api, session) = (
            std::mem::take(&mut self.pending),
            api.clone(),
            session.to_owned(),
        );
        self.asks
            .spawn(async move { api.missing(&ids, Some(&session)).await });
    }

    /// Every reused chunk the server no longer has.
    async fn finish(&mut self, api: &Api, session: &str) -> anyhow::Result<HashSet<BlockId>> {
        self.ask(api, session);
        let mut missing = HashSet::new();
        while let Some(r) = self.asks.join_next().await {
            missing.extend(r.context("block query task")??);
        }
        Ok(missing)
    }
}

/// Read a file again (its cached chunks were gone from the server).
async fn reread(path: &Path, keys: &Arc<Keys>, up: &mut Uploader) -> anyhow::Result<Vec<BlockId>> {
    let (p, k) = (path.to_path_buf(), keys.clone());
    let chunks = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(BlockId, Vec<u8>)>> {
        let mut out = Vec::new();
        chunk_file(&p, |c| {
            let blob = k.seal(&c);
            out.push((BlockId::of(&blob), blob));
            Ok(())
        })
        .with_context(|| format!("read {}", p.display()))?;
        Ok(out)
    })
    .await??;
    let mut ids = Vec::new();
    for (id, blob) in chunks {
        up.add(id, blob.into()).await?;
        ids.push(id);
    }
    Ok(ids)
}

fn build_excludes(globs: &[String]) -> anyhow::Result<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        b.add(globset::Glob::new(g).with_context(|| format!("exclude pattern {g:?}"))?);
    }
    Ok(b.build()?)
}

#[derive(Default)]
struct ReadStats {
    read: u64,
    /// Paths (bytes, without the leading '/') whose chunks came from the cache.
    reused: Vec<Vec<u8>>,
    /// Identity of each file read or reused, for the next cache.
    identity: HashMap<Vec<u8>, CachedFile>,
}

/// The reading thread: walk, then read or reuse every file, sending events.
fn read_tree(
    roots: &[PathBuf],
    excludes: &globset::GlobSet,
    one_fs: bool,
    keys: &Arc<Keys>,
    cache: &Cache,
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<ReadStats> {
    let send = |ev| {
        tx.blocking_send(ev)
            .map_err(|_| anyhow::anyhow!("backup stopped"))
    };
    // 1. Walk.
    let mut items = Vec::new();
    for root in roots {
        let root =
            std::path::absolute(root).with_context(|| format!("resolve {}", root.display()))?;
        let meta =
            std::fs::symlink_metadata(&root).with_context(|| format!("read {}", root.display()))?;
        let dev = meta.dev();
        let mut stack = vec![root];
        while let Some(p) = stack.pop() {
            if excludes.is_match(&p) || p.file_name().is_some_and(|n| excludes.is_match(n)) {
                continue;
            }
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) => {
                    send(Event::Skipped(p.display().to_string(), e.to_string()))?;
                    continue;
                }
            };
            if m.is_dir() {
                if one_fs && m.dev() != dev {
                    items.push((p, m));
                    continue;
                }
                match std::fs::read_dir(&p) {
                    Ok(rd) => {
                        let mut children: Vec<PathBuf> =
                            rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                        children.sort();
                        stack.extend(children.into_iter().rev());
                    }
                    Err(e) => send(Event::Skipped(p.display().to_string(), e.to_string()))?,
                }
            }
            if m.is_dir() || m.is_file() || m.file_type().is_symlink() {
                items.push((p, m));
            }
        }
    }
    let files = items.iter().filter(|(_, m)| m.is_file()).count() as u64;
    let bytes = items
        .iter()
        .filter(|(_, m)| m.is_file())
        .map(|(_, m)| m.len())
        .sum();
    send(Event::Planned { files, bytes })?;

    // 2. Read, chunk, seal (in parallel batches), send.
    let mut stats = ReadStats::default();
    let mut batch = SealBatch::new(keys.clone(), &send);
    for (i, (p, m)) in items.into_iter().enumerate() {
        let rel = p
            .as_os_str()
            .as_bytes()
            .strip_prefix(b"/")
            .unwrap_or(p.as_os_str().as_bytes())
            .to_vec();
        let mut e = Entry {
            path: PathRepr::from_bytes(&rel),
            kind: Kind::Dir,
            mode: m.mode() & 0o7777,
            mtime_sec: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            size: 0,
            target: None,
            chunks: Vec::new(),
            deleted_ms: None,
        };
        if m.file_type().is_symlink() {
            e.kind = Kind::Symlink;
            match std::fs::read_link(&p) {
                Ok(t) => e.target = Some(PathRepr::from_bytes(t.as_os_str().as_bytes())),
                Err(err) => {
                    send(Event::Skipped(p.display().to_string(), err.to_string()))?;
                    continue;
                }
            }
        } else if m.is_file() {
            e.kind = Kind::File;
            e.size = m.len();
            let identity = CachedFile {
                size: m.len(),
                mtime_sec: m.mtime(),
                mtime_nsec: m.mtime_nsec() as u32,
                ino: m.ino(),
                ctime_sec: m.ctime(),
                chunks: Vec::new(),
                mode: m.mode() & 0o7777,
            };
            let cached = cache.files.get(&hex::encode(&rel)).filter(|c| {
                c.size == identity.size
                    && c.mtime_sec == identity.mtime_sec
                    && c.mtime_nsec == identity.mtime_nsec
                    && c.ino == identity.ino
                    && c.ctime_sec == identity.ctime_sec
            });
            if let Some(c) = cached {
                e.chunks = c.chunks.clone();
                stats.reused.push(rel.clone());
                send(Event::Cached(e.size, c.chunks.clone()))?;
            } else {
                let slot = batch.open(i, e);
                match chunk_file(&p, |c| batch.push(slot, c)) {
                    Ok(()) => {
                        batch.close(slot);
                        stats.read += 1;
                        stats.identity.insert(rel, identity);
                    }
                    Err(err) => {
                        batch.fail(slot);
                        send(Event::Skipped(p.display().to_string(), format!("{err:#}")))?;
                    }
                }
                continue;
            }
            stats.identity.insert(rel, identity);
        }
        let slot = batch.open(i, e);
        batch.close(slot);
    }
    batch.finish()?;
    Ok(stats)
}

/// Files are read in windows of this size (a multiple of `CDC_MAX`).
const WINDOW: usize = 16 << 20;

/// Split a file with content-defined chunking, handing each chunk to `emit`
/// as a slice of the window it was read into: no chunk is copied. (fastcdc's
/// `StreamCDC` copies each chunk out byte by byte and then shifts its whole
/// buffer; that was a sixth of the agent's CPU.) The cut points are
/// `StreamCDC`'s: a chunk is cut only with `CDC_MAX` bytes ahead of its start
/// or at the end of the file, so what `fastcdc` sees is the same; the few
/// bytes after the last cut of a window are carried into the next.
fn chunk_file(p: &Path, mut emit: impl FnMut(Bytes) -> anyhow::Result<()>) -> anyhow::Result<()> {
    use std::io::Read;
    let mut f = File::open(p)?;
    // A small file is read in one read, into a buffer of its own size; a
    // file that turns out longer than it was goes on in whole windows.
    let mut room = (WINDOW as u64).min(f.metadata()?.len().saturating_add(1));
    let mut carry = Bytes::new();
    loop {
        let mut buf = Vec::with_capacity(room as usize);
        buf.extend_from_slice(&carry);
        let want = room - carry.len() as u64;
        let got = (&mut f).take(want).read_to_end(&mut buf)? as u64;
        let eof = got < want;
        let window = Bytes::from(buf);
        let mut done = 0;
        for c in fastcdc::v2020::FastCDC::new(&window, CDC_MIN, CDC_AVG, CDC_MAX) {
            if !eof && window.len() - c.offset < CDC_MAX as usize {
                break;
            }
            emit(window.slice(c.offset..c.offset + c.length))?;
            done = c.offset + c.length;
        }
        if eof {
            return Ok(());
        }
        carry = window.slice(done..);
        room = WINDOW as u64;
    }
}

/// Seal this many bytes of chunks at a time, on every core.
const SEAL_BATCH: usize = 8 << 20;

/// Sealed chunks: (id, blob, plaintext length), in the batch's order.
type Sealed = Vec<(BlockId, Vec<u8>, u64)>;

/// Chunks waiting to be sealed, and the entries they belong to. Sealing
/// (two blake3 passes, compression, AES-256-GCM) is the agent's main CPU
/// cost: a batch spanning many small files or part of a large one is sealed
/// on all cores while the reading thread reads and cuts the next batch; then
/// its blocks, and every entry whose blocks are all sent, go out in order.
struct SealBatch<'a> {
    keys: Arc<Keys>,
    send: &'a dyn Fn(Event) -> anyhow::Result<()>,
    chunks: Vec<(usize, Bytes)>,
    bytes: usize,
    /// The batch being sealed: its chunks' slots, and the sealing threads.
    sealing: Option<(Vec<usize>, Vec<std::thread::JoinHandle<Sealed>>)>,
    /// Entries being assembled, by slot (slots are never reused); an entry
    /// leaves once sent or failed.
    open: std::collections::BTreeMap<usize, Open>,
    next_slot: usize,
    threads: usize,
}

struct Open {
    item: usize,
    entry: Entry,
    /// Fully read: no more chunks will come.
    closed: bool,
    /// Chunks pushed but not yet sealed and sent.
    outstanding: usize,
}

impl<'a> SealBatch<'a> {
    fn new(keys: Arc<Keys>, send: &'a dyn Fn(Event) -> anyhow::Result<()>) -> Self {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        Self {
            keys,
            send,
            chunks: Vec::new(),
            bytes: 0,
            sealing: None,
            open: Default::default(),
            next_slot: 0,
            threads,
        }
    }

    fn open(&mut self, item: usize, entry: Entry) -> usize {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.open.insert(
            slot,
            Open {
                item,
                entry,
                closed: false,
                outstanding: 0,
            },
        );
        slot
    }

    fn close(&mut self, slot: usize) {
        if let Some(o) = self.open.get_mut(&slot) {
            o.closed = true;
        }
    }

    /// The file could not be read: drop its entry (its chunks already
    /// gathered are sealed but not sent).
    fn fail(&mut self, slot: usize) {
        self.open.remove(&slot);
    }

    fn push(&mut self, slot: usize, data: Bytes) -> anyhow::Result<()> {
        if let Some(o) = self.open.get_mut(&slot) {
            o.outstanding += 1;
        }
        self.bytes += data.len();
        self.chunks.push((slot, data));
        if self.bytes >= SEAL_BATCH {
            self.start()?;
        }
        Ok(())
    }

    /// Hand the gathered chunks to sealing threads, after sending the batch
    /// sealed before (so at most one batch is sealing while one is read).
    fn start(&mut self) -> anyhow::Result<()> {
        self.collect()?;
        let chunks = std::mem::take(&mut self.chunks);
        self.bytes = 0;
        let per = chunks.len().div_ceil(self.threads).max(1);
        let mut slots = Vec::with_capacity(chunks.len());
        let mut groups: Vec<Vec<Bytes>> = Vec::new();
        for (i, (slot, data)) in chunks.into_iter().enumerate() {
            if i % per == 0 {
                groups.push(Vec::with_capacity(per));
            }
            slots.push(slot);
            groups.last_mut().expect("pushed").push(data);
        }
        let handles = groups
            .into_iter()
            .map(|group| {
                let keys = self.keys.clone();
                std::thread::spawn(move || {
                    group
                        .iter()
                        .map(|data| {
                            let blob = keys.seal(data);
                            (BlockId::of(&blob), blob, data.len() as u64)
                        })
                        .collect::<Sealed>()
                })
            })
            .collect();
        self.sealing = Some((slots, handles));
        Ok(())
    }

    /// Wait for the batch being sealed; send its blocks, then every entry
    /// that is complete.
    fn collect(&mut self) -> anyhow::Result<()> {
        if let Some((slots, handles)) = self.sealing.take() {
            let mut slots = slots.into_iter();
            for h in handles {
                let sealed = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("a sealing thread panicked"))?;
                for (id, blob, len) in sealed {
                    let slot = slots.next().expect("one slot per chunk");
                    if let Some(o) = self.open.get_mut(&slot) {
                        o.entry.chunks.push(id);
                        o.outstanding -= 1;
                        (self.send)(Event::Chunk(id, blob.into(), len))?;
                    }
                }
            }
        }
        let done: Vec<usize> = self
            .open
            .iter()
            .filter(|(_, o)| o.closed && o.outstanding == 0)
            .map(|(slot, _)| *slot)
            .collect();
        for slot in done {
            let o = self.open.remove(&slot).expect("listed");
            (self.send)(Event::Entry(o.item, o.entry))?;
        }
        Ok(())
    }

    /// Seal and send everything left.
    fn finish(&mut self) -> anyhow::Result<()> {
        self.start()?;
        self.collect()
    }
}

/// Batches "which of these are missing?" and keeps uploads in flight. A full
/// batch is handed to a task (query, then uploads) so the reader keeps
/// chunking meanwhile. At most four batches wait for their query or for
/// stream slots, and each upload holds a slot: sealed blocks in memory stay
/// under four batches plus one block per stream.
struct Uploader {
    api: Api,
    session: String,
    pending: Vec<(BlockId, Bytes)>,
    pending_bytes: usize,
    seen: HashSet<BlockId>,
    slots: Arc<Semaphore>,
    batches: Arc<Semaphore>,
    inflight: JoinSet<anyhow::Result<(u64, u64)>>,
    uploaded_blocks: u64,
    uploaded_bytes: u64,
}

impl Uploader {
    fn new(api: Api, session: String, streams: usize) -> Self {
        Self {
            api,
            session,
            pending: Vec::new(),
            pending_bytes: 0,
            seen: HashSet::new(),
            slots: Arc::new(Semaphore::new(streams.max(1))),
            batches: Arc::new(Semaphore::new(4)),
            inflight: JoinSet::new(),
            uploaded_blocks: 0,
            uploaded_bytes: 0,
        }
    }

    async fn add(&mut self, id: BlockId, blob: Bytes) -> anyhow::Result<()> {
        if !self.seen.insert(id) {
            return Ok(());
        }
        self.pending_bytes += blob.len();
        self.pending.push((id, blob));
        if self.pending.len() >= BATCH_BLOCKS || self.pending_bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        self.reap()
    }

    fn count(
        &mut self,
        done: Result<anyhow::Result<(u64, u64)>, tokio::task::JoinError>,
    ) -> anyhow::Result<()> {
        let (blocks, bytes) = done.context("upload task")??;
        self.uploaded_blocks += blocks;
        self.uploaded_bytes += bytes;
        Ok(())
    }

    fn reap(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.inflight.try_join_next() {
            self.count(done)?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let permit = self
            .batches
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let (api, session, slots) = (self.api.clone(), self.session.clone(), self.slots.clone());
        self.inflight.spawn(async move {
            let ids: Vec<BlockId> = batch.iter().map(|(id, _)| *id).collect();
            let missing: HashSet<BlockId> = api
                .missing(&ids, Some(&session))
                .await?
                .into_iter()
                .collect();
            // Each upload, of one block or of a bundle of small ones, is one
            // stream and holds a slot until it is answered.
            let mut uploads = JoinSet::new();
            let mut launch = async |blocks: Vec<(BlockId, Bytes)>| {
                let slot = slots.clone().acquire_owned().await.expect("semaphore open");
                let (api, session) = (api.clone(), session.clone());
                uploads.spawn(async move {
                    let n: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
                    match blocks.as_slice() {
                        [(id, blob)] => api.put_block(id, blob.clone(), Some(&session)).await?,
                        _ => api.put_bundle(&blocks, Some(&session)).await?,
                    }
                    drop(slot);
                    anyhow::Ok((blocks.len() as u64, n))
                });
            };
            let (mut bundle, mut bundle_bytes) = (Vec::new(), 0);
            for (id, blob) in batch.into_iter().filter(|(id, _)| missing.contains(id)) {
                if blob.len() > BUNDLE_BLOCK_MAX {
                    launch(vec![(id, blob)]).await;
                    continue;
                }
                if bundle_bytes + BUNDLE_RECORD_HEADER + blob.len() > BUNDLE_BYTES
                    || bundle.len() == BUNDLE_MAX_BLOCKS
                {
                    launch(std::mem::take(&mut bundle)).await;
                    bundle_bytes = 0;
                }
                bundle_bytes += BUNDLE_RECORD_HEADER + blob.len();
                bundle.push((id, blob));
            }
            if !bundle.is_empty() {
                launch(bundle).await;
            }
            // Every upload of this batch holds a stream slot now: the next
            // batch may be asked about while these finish.
            drop(permit);
            let (mut blocks, mut bytes) = (0, 0);
            while let Some(r) = uploads.join_next().await {
                let (b, n) = r.context("upload task")??;
                blocks += b;
                bytes += n;
            }
            Ok((blocks, bytes))
        });
        self.reap()
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        self.flush().await?;
        while let Some(done) = self.inflight.join_next().await {
            self.count(done)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(chunk: &[u8]) -> CachedFile {
        CachedFile {
            size: chunk.len() as u64,
            mtime_sec: 1,
            mtime_nsec: 0,
            ino: 1,
            ctime_sec: 1,
            chunks: vec![BlockId::of(chunk)],
            mode: 0o600,
        }
    }

    fn key(p: &str) -> String {
        hex::encode(p.as_bytes())
    }

    #[test]
    fn deleted_files_are_carried_while_keep_deleted_says_and_not_otherwise() {
        let day = 86_400_000u64;
        let mut cache = Cache::default();
        cache
            .files
            .insert(key("home/ann/gone.txt"), cached(b"gone"));
        cache
            .files
            .insert(key("home/ann/here.txt"), cached(b"here"));
        let present: HashSet<Vec<u8>> = [b"home/ann/here.txt".to_vec()].into();
        // The previous backup as the cache remembers it (the stand-in for
        // its manifest).
        let previous = cached_entries(&cache);
        // Off (the default): nothing is carried.
        assert!(carry_deleted(&previous, &present, KeepDeleted::Off, 10 * day).is_empty());
        // On: the file gone since the last backup, stamped now, with what
        // restoring it needs.
        let keep = KeepDeleted::For(Duration::from_secs(30 * 86_400));
        let c = carry_deleted(&previous, &present, keep, 10 * day);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path.bytes(), b"home/ann/gone.txt");
        assert_eq!(
            (c[0].deleted_ms, c[0].mode, c[0].kind),
            (Some(10 * day), 0o600, Kind::File)
        );
        assert_eq!(c[0].chunks, vec![BlockId::of(b"gone")]);
        // The next backup, from the previous manifest (the file still
        // there, the deleted one as carried): carried again with the time
        // it went, until the period ends.
        let here = previous
            .iter()
            .find(|e| e.path.bytes() == b"home/ann/here.txt")
            .unwrap()
            .clone();
        let next = vec![here, c[0].clone()];
        let again = carry_deleted(&next, &present, keep, 39 * day);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].deleted_ms, Some(10 * day));
        assert!(carry_deleted(&next, &present, keep, 40 * day).is_empty());
        // Forever keeps it whatever the time; a file that comes back is not
        // carried as deleted.
        assert_eq!(
            carry_deleted(&next, &present, KeepDeleted::Forever, 4000 * day).len(),
            1
        );
        let back: HashSet<Vec<u8>> =
            [b"home/ann/here.txt".to_vec(), b"home/ann/gone.txt".to_vec()].into();
        assert!(carry_deleted(&next, &back, KeepDeleted::Forever, 41 * day).is_empty());
    }

    #[test]
    fn keep_deleted_reads_the_settings_value() {
        use serde_json::json;
        assert_eq!(KeepDeleted::from_value(&json!(0)), KeepDeleted::Off);
        assert_eq!(KeepDeleted::from_value(&json!(null)), KeepDeleted::Off);
        assert_eq!(
            KeepDeleted::from_value(&json!("forever")),
            KeepDeleted::Forever
        );
        assert_eq!(
            KeepDeleted::from_value(&json!(60)),
            KeepDeleted::For(Duration::from_secs(60))
        );
    }

    /// The windowed chunker cuts where fastcdc's own stream chunker does, so
    /// chunks keep deduplicating against blocks stored before it.
    #[test]
    fn windowed_chunking_cuts_where_the_stream_chunker_does() {
        let dir = tempfile::tempdir().unwrap();
        // Random data across several windows, then a run of zeros (forced
        // cuts at CDC_MAX), then more random data; and small and empty files.
        let mut big = vec![0u8; 2 * WINDOW + 3 * CDC_MAX as usize + 12345];
        getrandom::fill(&mut big).unwrap();
        big[WINDOW - 1000..WINDOW + 9 * (CDC_MAX as usize) / 2].fill(0);
        for (name, data) in [
            ("big", big.as_slice()),
            ("window", &big[..WINDOW]),
            ("small", &big[..300_000]),
            ("tiny", &big[..10]),
            ("empty", &big[..0]),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            let mut ours = Vec::new();
            chunk_file(&p, |c| {
                ours.push(c);
                Ok(())
            })
            .unwrap();
            let theirs: Vec<Vec<u8>> =
                fastcdc::v2020::StreamCDC::new(File::open(&p).unwrap(), CDC_MIN, CDC_AVG, CDC_MAX)
                    .map(|c| c.unwrap().data)
                    .collect();
            assert_eq!(ours.len(), theirs.len(), "{name}: chunk count");
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(a[..] == b[..], "{name}: a chunk differs");
            }
            assert_eq!(ours.concat(), data, "{name}: the chunks are the file");
        }
    }
}
