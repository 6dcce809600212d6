//! `coffer-agent restore` and `coffer-agent verify`.
//!
//! Every block read is checked twice: its blake3 must be its id (the server
//! sent what was stored) and its AEAD tag must verify (nobody altered it). A
//! bad or missing block fails the file it belongs to, loudly and by name; the
//! other files go on. Nothing is written outside the target: a manifest path
//! that is absolute or climbs with `..` is refused, symlinks are created only
//! after every file, and no file or directory is reached through a symlink:
//! everything below the target goes through descriptors (`confined`).
//! Files' setuid/setgid bits are removed unless `--keep-setuid`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use coffer_types::wire::BackupInfo;
use coffer_types::BlockId;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::api::Api;
use crate::confined::{set_file_meta, Root};
use crate::crypto::Keys;
use crate::manifest::{Entry, Kind, Manifest, ManifestRoot};
use crate::progress::Progress;

/// Run a fetch as a task of its own, holding a slot of `cap` meanwhile. The
/// command's future runs on the thread that called `block_on`; spawning
/// puts hashing and decryption on every worker.
fn spawn_holding<T: Send + 'static>(
    cap: &Arc<Semaphore>,
    fetch: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> impl std::future::Future<Output = anyhow::Result<T>> {
    let cap = cap.clone();
    let task = tokio::spawn(async move {
        let _slot = cap.acquire_owned().await.expect("semaphore open");
        fetch.await
    });
    async move { task.await.context("block fetch task failed")? }
}

/// Fetch and check a block (`GET …/blocks/{id}`) on a task of its own.
fn spawn_fetch(
    api: &Api,
    keys: &Arc<Keys>,
    id: BlockId,
    cap: &Arc<Semaphore>,
) -> impl std::future::Future<Output = anyhow::Result<Vec<u8>>> {
    let (api, keys) = (api.clone(), keys.clone());
    spawn_holding(cap, async move { fetch(&api, &keys, &id).await })
}

/// Fetch blocks in one request (`POST …/blocks/fetch`) on a task of its
/// own, and check each: the outer `Err` is the request failing, an inner
/// one a block missing or corrupt.
fn spawn_fetch_many(
    api: &Api,
    keys: &Arc<Keys>,
    ids: Vec<BlockId>,
    cap: &Arc<Semaphore>,
) -> impl std::future::Future<Output = anyhow::Result<Vec<anyhow::Result<Vec<u8>>>>> {
    let (api, keys) = (api.clone(), keys.clone());
    spawn_holding(cap, async move {
        let blobs = api.fetch_blocks(&ids).await?;
        Ok(ids
            .iter()
            .zip(blobs)
            .map(|(id, blob)| check(&keys, id, blob))
            .collect())
    })
}

/// Fetch a block and check it: `Err` names what is wrong.
pub async fn fetch(api: &Api, keys: &Keys, id: &BlockId) -> anyhow::Result<Vec<u8>> {
    // The server resets the read of a block it finds corrupt.
    let blob = api.get_block(id).await.with_context(|| {
        format!("block {id} could not be read whole: the server may have found it corrupt")
    })?;
    check(keys, id, blob)
}

/// A block as the server sent it (`None`: it has none), checked against its
/// id and opened.
fn check(keys: &Keys, id: &BlockId, blob: Option<bytes::Bytes>) -> anyhow::Result<Vec<u8>> {
    let blob = blob.ok_or_else(|| {
        anyhow::anyhow!(
            "block {id} is missing on the server, or was found corrupt there (the next backup \
             uploads it again)"
        )
    })?;
    if BlockId::of(&blob) != *id {
        bail!("block {id} is corrupt: its content does not hash to its id");
    }
    keys.open(Vec::from(blob))
        .with_context(|| format!("block {id} is corrupt"))
}

/// The backup's manifest.
pub async fn manifest(api: &Api, keys: &Keys, backup: &BackupInfo) -> anyhow::Result<Manifest> {
    let root: ManifestRoot = serde_json::from_slice(
        &fetch(api, keys, &backup.manifest)
            .await
            .context("read the manifest")?,
    )
    .context("the manifest root is not valid")?;
    let mut json = Vec::new();
    for part in &root.parts {
        json.extend(fetch(api, keys, part).await.context("read the manifest")?);
    }
    serde_json::from_slice(&json).context("the manifest is not valid")
}

pub struct RestoreOptions {
    pub target: PathBuf,
    pub include: Option<globset::GlobSet>,
    pub streams: usize,
    /// Keep files' setuid and setgid bits (by default they are removed).
    pub keep_setuid: bool,
    /// Restore files the backup keeps as deleted too (by default only what
    /// was on the disk when it ran).
    pub include_deleted: bool,
}

/// Where a restore writes, and how.
struct Out {
    root: Root,
    keep_setuid: bool,
    /// Files whose setuid/setgid bits were removed.
    masked: AtomicU64,
}

impl Out {
    fn file_mode(&self, mode: u32) -> u32 {
        if self.keep_setuid || mode & 0o6000 == 0 {
            mode
        } else {
            self.masked.fetch_add(1, Ordering::Relaxed);
            mode & !0o6000
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Files restored without the setuid/setgid bits they had.
    pub setuid_removed: u64,
    pub bytes: u64,
    /// Files that could not be restored, with why.
    pub failed: Vec<(String, String)>,
    /// Manifest paths refused as unsafe.
    pub refused: Vec<String>,
    /// Deleted files the backup keeps that were left out (no
    /// `--include-deleted`).
    pub deleted_skipped: u64,
}

pub async fn restore(
    api: &Api,
    keys: Arc<Keys>,
    m: &Manifest,
    opts: &RestoreOptions,
    progress: &Progress,
) -> anyhow::Result<RestoreSummary> {
    std::fs::create_dir_all(&opts.target)
        .with_context(|| format!("create {}", opts.target.display()))?;
    let target = opts.target.canonicalize()?;
    let out = Out {
        root: Root::open(&target)?,
        keep_setuid: opts.keep_setuid,
        masked: AtomicU64::new(0),
    };
    let mut sum = RestoreSummary::default();
    // Paths relative to the target: everything below it is reached through
    // descriptors (see `confined`), never by resolving a whole path.
    let mut chosen: Vec<(&Entry, PathBuf)> = Vec::new();
    for e in &m.entries {
        if e.deleted_ms.is_some() && !opts.include_deleted {
            sum.deleted_skipped += 1;
            continue;
        }
        let Some(rel) = e.path.safe_relative() else {
            progress.warn(&format!(
                "refusing unsafe path in the manifest: {:?}",
                e.path.display()
            ));
            sum.refused.push(e.path.display());
            continue;
        };
        if let Some(inc) = &opts.include {
            if !inc.is_match(&rel) {
                continue;
            }
        }
        chosen.push((e, rel));
    }
    progress.plan(
        chosen.iter().filter(|(e, _)| e.kind == Kind::File).count() as u64,
        chosen.iter().map(|(e, _)| e.size).sum(),
    );

    // Directories first.
    for (e, rel) in chosen.iter().filter(|(e, _)| e.kind == Kind::Dir) {
        match out.root.dir(rel, true) {
            Ok(_) => sum.dirs += 1,
            Err(err) => sum.failed.push((e.path.display(), format!("{err:#}"))),
        }
    }
    // Files, a few at a time, chunks in order; small ones in bundles.
    let files: Vec<(&Entry, PathBuf)> = chosen
        .iter()
        .filter(|(e, _)| e.kind == Kind::File)
        .cloned()
        .collect();
    let out_ref = &out;
    // Many files at once (small files are bound by round trips), but at most
    // `streams` block fetches in flight overall, whatever the file sizes.
    let fetches = Arc::new(Semaphore::new(opts.streams.max(1)));
    let (keys, fetches) = (&keys, &fetches);
    let jobs = bundles(&files, |(e, _)| small_file(e));
    let results: Vec<Vec<(String, anyhow::Result<u64>)>> = futures::stream::iter(jobs)
        .map(|group| async move {
            match group {
                [(e, rel)] => vec![(
                    e.path.display(),
                    restore_file(api, keys, out_ref, e, rel, fetches).await,
                )],
                group => restore_bundle(api, keys, out_ref, group, fetches).await,
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut done = 0;
    for (name, r) in results.into_iter().flatten() {
        match r {
            Ok(n) => {
                sum.files += 1;
                sum.bytes += n;
                done += n;
                progress.bytes(done, 0);
            }
            Err(err) => {
                progress.warn(&format!("could not restore {name}: {err:#}"));
                sum.failed.push((name, format!("{err:#}")));
            }
        }
    }
    // Symlinks last, so no file was written through one.
    for (e, rel) in chosen.iter().filter(|(e, _)| e.kind == Kind::Symlink) {
        let Some(t) = &e.target else { continue };
        let made = split(rel).and_then(|(parent, name)| {
            let dir = out.root.dir(parent, true)?;
            dir.remove(name);
            use std::os::unix::ffi::OsStrExt;
            let to = t.bytes();
            dir.symlink(
                name,
                std::ffi::OsStr::from_bytes(&to),
                e.mtime_sec,
                e.mtime_nsec,
            )
            .context("create symlink")
        });
        match made {
            Ok(()) => sum.symlinks += 1,
            Err(err) => sum.failed.push((e.path.display(), format!("{err:#}"))),
        }
    }
    // Directory modes and times last, deepest first, each through the
    // directory's own descriptor (a symlink swapped in meanwhile is refused).
    for (e, rel) in chosen.iter().rev().filter(|(e, _)| e.kind == Kind::Dir) {
        if let Ok(dir) = out.root.dir(rel, false) {
            let _ = dir.set_meta(e.mode, e.mtime_sec, e.mtime_nsec);
        }
    }
    sum.setuid_removed = out.masked.load(Ordering::Relaxed);
    if sum.setuid_removed > 0 {
        progress.warn(&format!(
            "removed the setuid/setgid bits of {} files; restore with --keep-setuid to keep them",
            sum.setuid_removed
        ));
    }
    progress.finish();
    Ok(sum)
}

/// A relative path's directory and last component.
fn split(rel: &Path) -> anyhow::Result<(&Path, &std::ffi::OsStr)> {
    let name = rel.file_name().context("a path without a name")?;
    Ok((rel.parent().unwrap_or(Path::new("")), name))
}

/// A file of one block of at most this size is fetched in a bundle with
/// others: for small files, a request each costs more than their bytes.
const BUNDLE_FILE_MAX: u64 = 256 << 10;
/// A bundle asks for at most this many bytes of files (the server answers at
/// most `BUNDLE_MAX_BYTES`, blocks being a few bytes longer than their plain
/// text at most).
const BUNDLE_FILES_BYTES: u64 = 2 << 20;

/// `items` cut into runs fetched together: consecutive items that `small`
/// sizes go in runs of at most `BUNDLE_FILES_BYTES` and `BUNDLE_MAX_BLOCKS`;
/// any other item is a run of its own.
fn bundles<T>(items: &[T], small: impl Fn(&T) -> Option<u64>) -> Vec<&[T]> {
    use coffer_types::wire::BUNDLE_MAX_BLOCKS;
    let mut runs = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let (mut j, mut bytes) = (i, 0);
        while let Some(size) = items.get(j).and_then(&small) {
            if j - i == BUNDLE_MAX_BLOCKS || bytes + size > BUNDLE_FILES_BYTES {
                break;
            }
            bytes += size;
            j += 1;
        }
        let end = j.max(i + 1);
        runs.push(&items[i..end]);
        i = end;
    }
    runs
}

/// The size of a file that is one small block, fetched in bundles.
fn small_file(e: &Entry) -> Option<u64> {
    (e.chunks.len() == 1 && e.size <= BUNDLE_FILE_MAX).then_some(e.size)
}

/// Restore a bundle of small files with one fetch. If the fetch itself
/// fails (say, a server without `blocks/fetch`), each file is fetched on
/// its own, so each reports its own error.
async fn restore_bundle(
    api: &Api,
    keys: &Arc<Keys>,
    out: &Out,
    group: &[(&Entry, PathBuf)],
    fetches: &Arc<Semaphore>,
) -> Vec<(String, anyhow::Result<u64>)> {
    let ids = group.iter().map(|(e, _)| e.chunks[0]).collect();
    match spawn_fetch_many(api, keys, ids, fetches).await {
        Ok(blocks) => {
            let mut written = Vec::with_capacity(group.len());
            for ((e, rel), data) in group.iter().zip(blocks) {
                let data = futures::stream::iter([data]);
                written.push((e.path.display(), write_file(out, e, rel, data).await));
            }
            written
        }
        Err(_) => {
            futures::future::join_all(group.iter().map(|(e, rel)| async move {
                (
                    e.path.display(),
                    restore_file(api, keys, out, e, rel, fetches).await,
                )
            }))
            .await
        }
    }
}

async fn restore_file(
    api: &Api,
    keys: &Arc<Keys>,
    out: &Out,
    e: &Entry,
    rel: &Path,
    fetches: &Arc<Semaphore>,
) -> anyhow::Result<u64> {
    // Up to 4 chunks of this file ahead, each holding a fetch slot while it
    // downloads and opens.
    let chunks = futures::stream::iter(e.chunks.iter())
        .map(|id| spawn_fetch(api, keys, *id, fetches))
        .buffered(4);
    write_file(out, e, rel, chunks).await
}

/// Write a file from its chunks' plaintexts, in order, into a new
/// temporary file beside it (`O_EXCL | O_NOFOLLOW`), give it its mode and
/// mtime through its descriptor, and move it into place within its
/// directory's descriptor (a symlink at the name is replaced, never
/// followed).
async fn write_file(
    out: &Out,
    e: &Entry,
    rel: &Path,
    chunks: impl futures::Stream<Item = anyhow::Result<Vec<u8>>>,
) -> anyhow::Result<u64> {
    // File work blocks; `block_in_place` lets the runtime move the HTTP/2
    // connection and the other restores off this worker meanwhile.
    use tokio::task::block_in_place;
    let (parent, name) = split(rel)?;
    let dir = block_in_place(|| out.root.dir(parent, true))?;
    let tmp = std::ffi::OsString::from(format!(
        ".coffer-restore-{}.{}.tmp",
        std::process::id(),
        hex::encode(&blake3::hash(rel.as_os_str().as_encoded_bytes()).as_bytes()[..6])
    ));
    let mut f = block_in_place(|| dir.create_new(&tmp))
        .with_context(|| format!("create a temporary file beside {}", rel.display()))?;
    let mut chunks = std::pin::pin!(chunks);
    let mut n = 0u64;
    let written: anyhow::Result<()> = async {
        while let Some(data) = chunks.try_next().await? {
            block_in_place(|| f.write_all(&data))?;
            n += data.len() as u64;
        }
        Ok(())
    }
    .await;
    if let Err(err) = written {
        dir.remove(&tmp);
        return Err(err);
    }
    if n != e.size {
        dir.remove(&tmp);
        bail!("restored {n} bytes, the manifest says {}", e.size);
    }
    block_in_place(|| {
        let placed = set_file_meta(&f, out.file_mode(e.mode), e.mtime_sec, e.mtime_nsec)
            .and_then(|()| dir.rename(&tmp, name));
        drop(f);
        if let Err(err) = placed {
            dir.remove(&tmp);
            return Err(err).with_context(|| format!("place {}", rel.display()));
        }
        Ok(n)
    })
}

#[derive(Debug, Default, Serialize)]
pub struct VerifySummary {
    pub blocks: u64,
    pub bytes: u64,
    /// Bad blocks with why, and the files they belong to.
    pub bad: Vec<BadBlock>,
}

#[derive(Debug, Serialize)]
pub struct BadBlock {
    pub block: BlockId,
    pub error: String,
    pub files: Vec<String>,
}

/// Download and check every block of a backup.
pub async fn verify(
    api: &Api,
    keys: Arc<Keys>,
    m: &Manifest,
    streams: usize,
) -> anyhow::Result<VerifySummary> {
    // Every block once, in manifest order, with its size when it is a
    // small file's only block (those are fetched in bundles).
    let mut owners: HashMap<BlockId, Vec<String>> = HashMap::new();
    let mut blocks: Vec<(BlockId, Option<u64>)> = Vec::new();
    for e in &m.entries {
        for c in &e.chunks {
            let files = owners.entry(*c).or_default();
            if files.is_empty() {
                blocks.push((*c, small_file(e)));
            }
            files.push(e.path.display());
        }
    }
    let cap = Arc::new(Semaphore::new(streams.max(1)));
    let (keys, cap) = (&keys, &cap);
    let single = |id: BlockId| {
        let fetched = spawn_fetch(api, keys, id, cap);
        async move { (id, fetched.await.map(|d| d.len())) }
    };
    let results: Vec<Vec<(BlockId, anyhow::Result<usize>)>> =
        futures::stream::iter(bundles(&blocks, |(_, small)| *small))
            .map(|run| async move {
                let ids: Vec<BlockId> = run.iter().map(|(id, _)| *id).collect();
                if let [id] = ids[..] {
                    return vec![single(id).await];
                }
                match spawn_fetch_many(api, keys, ids.clone(), cap).await {
                    Ok(opened) => ids
                        .into_iter()
                        .zip(opened)
                        .map(|(id, r)| (id, r.map(|d| d.len())))
                        .collect(),
                    // As in restore: one by one, each with its own error.
                    Err(_) => futures::future::join_all(ids.into_iter().map(single)).await,
                }
            })
            .buffer_unordered(streams.max(1))
            .collect()
            .await;
    let mut sum = VerifySummary::default();
    for (id, r) in results.into_iter().flatten() {
        sum.blocks += 1;
        match r {
            Ok(n) => sum.bytes += n as u64,
            Err(e) => sum.bad.push(BadBlock {
                block: id,
                error: format!("{e:#}"),
                files: owners.remove(&id).unwrap_or_default(),
            }),
        }
    }
    Ok(sum)
}
