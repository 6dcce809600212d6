//! Streaming a block in: spool, hash, then publish durably.
//!
//! Memory per upload is bounded: chunks are gathered up to [`FLUSH_AT`] bytes
//! and then hashed and written to the spool file on a blocking thread, so a
//! 16 MiB block never sits whole in memory on the disk path.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path as FsPath, PathBuf};

use bytes::Bytes;
use coffer_types::BlockId;
use object_store::{MultipartUpload, ObjectStoreExt, PutMode, PutPayload};

use crate::config::Backend;
use crate::durable::DurableDirs;
use crate::pack::Location;
use crate::store::BlockStore;
use crate::{Result, StorageError};

/// Gather this many bytes before a write to the spool file.
const FLUSH_AT: usize = 256 << 10;

/// What publishing did, and where the block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub outcome: PutOutcome,
    /// Record this with the block: reads need it.
    pub location: Location,
}

/// Whether publishing wrote the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The block was written by this call.
    Created,
    /// A block of that id was already stored (content-addressed, so it is the
    /// same bytes); nothing was written.
    Present,
}

/// An upload in progress. Dropping it before [`BlockWriter::publish`] removes
/// the spool file: nothing unverified is ever visible.
///
/// On disk the spool file sits in the directory the claimed block id will be
/// published into, so publishing is a same-directory rename: a cross-directory
/// rename takes a filesystem-wide lock on Linux, and one shared spool
/// directory makes every upload contend on one directory's lock and inode
/// group. A body that fits in one buffer is written, synced and renamed in a
/// single blocking call.
pub struct BlockWriter {
    store: BlockStore,
    archive: String,
    path: PathBuf,
    file: Option<Spool>,
    hasher: Option<blake3::Hasher>,
    pending: Vec<Bytes>,
    pending_len: usize,
    len: u64,
    /// Whether a spool file may exist at `path` (created, not yet renamed).
    spooled: bool,
    /// Publish over a stored copy of the same id (one found corrupt).
    replace: bool,
}

impl std::fmt::Debug for BlockWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}

impl BlockWriter {
    /// Publish over the stored copy of this id instead of answering
    /// "present": the stored copy was found not to match its id.
    pub fn replacing(mut self) -> Self {
        self.replace = true;
        self
    }

    pub(crate) fn create(store: BlockStore, archive: String, claimed: &BlockId) -> Result<Self> {
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd).map_err(|e| StorageError::Io {
            op: "make spool name",
            source: std::io::Error::other(e),
        })?;
        let name = format!(".{}.part", hex::encode(rnd));
        let path = match &store.inner.local_root {
            Some(root) => {
                let target = root.join(store.key(&archive, claimed).as_ref());
                target
                    .parent()
                    .expect("block keys have a directory")
                    .join(name)
            }
            None => store.inner.spool_dir.join(name),
        };
        Ok(Self {
            store,
            archive,
            path,
            file: None,
            hasher: Some(blake3::Hasher::new()),
            pending: Vec::new(),
            pending_len: 0,
            len: 0,
            spooled: false,
            replace: false,
        })
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append a chunk of the body.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.len += chunk.len() as u64;
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hash and write the gathered chunks to the spool file (created on the
    /// first flush) on a blocking thread.
    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() && self.file.is_some() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let mut hasher = self.hasher.take().ok_or_else(poisoned)?;
        let file = self.file.take();
        let path = self.path.clone();
        let dirs = self.store.inner.dirs.clone();
        self.spooled = true;
        let (file, hasher) = blocking(move || {
            let mut file = match file {
                Some(f) => f,
                None => Spool::create(&path, dirs.as_deref())?,
            };
            for c in &chunks {
                hasher.update(c);
            }
            file.append(&chunks)?;
            Ok((file, hasher))
        })
        .await?;
        self.file = Some(file);
        self.hasher = Some(hasher);
        Ok(())
    }

    /// The blake3 of everything written: the id the body deserves.
    pub async fn finish(&mut self) -> Result<BlockId> {
        if self.file.is_some() {
            self.flush().await?;
        }
        let hasher = self.hasher.as_ref().ok_or_else(poisoned)?;
        // A small body still in memory is hashed here, without a file; it
        // stays pending for `publish`.
        let mut h = hasher.clone();
        for c in &self.pending {
            h.update(c);
        }
        Ok(BlockId::from_hash(h.finalize()))
    }

    /// Publish the body as block `id` and return once it is on stable
    /// storage. The caller must have checked that [`BlockWriter::finish`]
    /// returned `id` (so `id` is the id this writer was created for). On
    /// failure nothing is visible under `id` that was not there before.
    pub async fn publish(mut self, id: BlockId) -> Result<Published> {
        let inner = self.store.inner.clone();
        let object = |outcome| Published {
            outcome,
            location: Location::Object,
        };
        match inner.backend {
            Backend::Disk
                if self.file.is_none() && self.len <= inner.pack_max && inner.packer.is_some() =>
            {
                let chunks = std::mem::take(&mut self.pending);
                let packer = inner.packer.as_ref().expect("checked");
                let location = packer.append(&self.archive, id, chunks, self.len).await?;
                Ok(Published {
                    outcome: PutOutcome::Created,
                    location,
                })
            }
            Backend::Disk => {
                let dirs = inner.dirs.clone().expect("disk has a root");
                let target = dirs
                    .root()
                    .join(self.store.key(&self.archive, &id).as_ref());
                let spool = self.path.clone();
                let file = self.file.take();
                let chunks = std::mem::take(&mut self.pending);
                self.spooled = true;
                let replace = self.replace;
                let outcome = blocking(move || {
                    if !replace && std::fs::metadata(&target).is_ok() {
                        // Another upload may have renamed it into place and
                        // not yet synced the directory: "present" must not
                        // be answered before it is durable.
                        dirs.ensure_name(&target)?;
                        return Ok(PutOutcome::Present);
                    }
                    let mut file = match file {
                        Some(f) => f,
                        None => Spool::create(&spool, Some(&dirs))?,
                    };
                    file.append(&chunks)?;
                    publish_file(file.finish()?, &spool, &target, &dirs)
                })
                .await?;
                // Renamed away (or never written when present).
                self.spooled = outcome == PutOutcome::Present;
                Ok(object(outcome))
            }
            Backend::Memory | Backend::S3 => {
                let _slot = inner.upload_slots.acquire().await.map_err(|_| poisoned())?;
                if self.file.is_none() {
                    // Small body: straight from memory.
                    let body: Bytes = std::mem::take(&mut self.pending).concat().into();
                    return self.put_object(body, id).await.map(object);
                }
                self.flush().await?;
                let file = self.file.take().ok_or_else(poisoned)?;
                let file = blocking(move || {
                    use std::io::Seek;
                    let mut file = file.finish()?;
                    file.rewind().map_err(StorageError::io("read spool file"))?;
                    Ok(file)
                })
                .await?;
                self.publish_object(file, id).await.map(object)
            }
        }
    }

    async fn put_object(&self, body: Bytes, id: BlockId) -> Result<PutOutcome> {
        let key = self.store.key(&self.archive, &id);
        let os = &self.store.inner.os;
        let mode = if self.replace {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        match os
            .put_opts(&key, PutPayload::from(body.clone()), mode.into())
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::Present),
            // Servers without conditional writes: content addressing makes
            // an overwrite with the same bytes harmless.
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                os.put(&key, body.into())
                    .await
                    .map_err(|e| self.store.classify("write block", e))?;
                Ok(PutOutcome::Created)
            }
            Err(e) => Err(self.store.classify("write block", e)),
        }
    }

    async fn publish_object(&self, file: File, id: BlockId) -> Result<PutOutcome> {
        let part = self.store.inner.part_size;
        if self.len as usize <= part {
            let body = read_all(file).await?;
            return self.put_object(body, id).await;
        }
        let key = self.store.key(&self.archive, &id);
        let os = &self.store.inner.os;
        if self
            .store
            .head(&self.archive, &id, Location::Object)
            .await?
            .is_some()
        {
            return Ok(PutOutcome::Present);
        }
        if let Some(mp) = self.store.inner.multipart.clone() {
            return self.publish_journaled(mp, key, file).await;
        }
        let upload = os
            .put_multipart(&key)
            .await
            .map_err(|e| self.store.classify("start multipart upload", e))?;
        // From here every way out but a completed upload aborts it: an
        // error returned below drops the guard, and so does a cancelled
        // request (its future dropped mid-upload).
        let mut upload = Multipart(Some(upload));
        let mut file = Some(file);
        loop {
            let buf = next_part(&mut file, part).await?;
            if buf.is_empty() {
                break;
            }
            upload
                .put_part(PutPayload::from(buf))
                .await
                .map_err(|e| self.store.classify("upload block part", e))?;
        }
        upload
            .complete()
            .await
            .map_err(|e| self.store.classify("complete multipart upload", e))?;
        Ok(PutOutcome::Created)
    }
}

impl BlockWriter {
    /// A multipart upload whose id is journaled (durably) before its first
    /// part, and un-journaled once completed or aborted: a crash between
    /// leaves the entry, and a later collection aborts the upload.
    async fn publish_journaled(
        &self,
        mp: std::sync::Arc<dyn object_store::multipart::MultipartStore>,
        key: object_store::path::Path,
        file: File,
    ) -> Result<PutOutcome> {
        let part = self.store.inner.part_size;
        let upload = mp
            .create_multipart(&key)
            .await
            .map_err(|e| self.store.classify("start multipart upload", e))?;
        let dir = multipart_journal_dir(&self.store.inner.spool_dir);
        let entry = dir.join(
            blake3::hash(format!("{key}\n{upload}").as_bytes())
                .to_hex()
                .as_str(),
        );
        let text = format!("{key}\n{upload}\n");
        let e2 = entry.clone();
        blocking(move || {
            // Whole or absent: written aside, synced, then renamed in.
            std::fs::create_dir_all(&dir)
                .map_err(StorageError::io("create the multipart journal"))?;
            let tmp = dir.join(format!(
                ".{}",
                e2.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
            ));
            let mut f =
                File::create(&tmp).map_err(StorageError::io("journal a multipart upload"))?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &e2))
                .map_err(StorageError::io("journal a multipart upload"))?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(StorageError::io("journal a multipart upload"))
        })
        .await?;
        // Every way out but completion aborts it and clears the entry (a
        // dropped future too, from a task of its own).
        let mut guard = Journaled {
            mp: Some(mp.clone()),
            key: key.clone(),
            upload: upload.clone(),
            entry,
        };
        let mut file = Some(file);
        let mut parts = Vec::new();
        loop {
            let buf = next_part(&mut file, part).await?;
            if buf.is_empty() {
                break;
            }
            let p = mp
                .put_part(&key, &upload, parts.len(), PutPayload::from(buf))
                .await
                .map_err(|e| self.store.classify("upload block part", e))?;
            parts.push(p);
        }
        mp.complete_multipart(&key, &upload, parts)
            .await
            .map_err(|e| self.store.classify("complete multipart upload", e))?;
        guard.mp = None;
        let _ = std::fs::remove_file(&guard.entry);
        Ok(PutOutcome::Created)
    }
}

/// The next `part` bytes of the spool file (empty at its end), read on the
/// blocking pool.
async fn next_part(file: &mut Option<File>, part: usize) -> Result<Vec<u8>> {
    let f = file.take().ok_or_else(poisoned)?;
    let (f, buf) = blocking(move || {
        let mut f = f;
        let mut buf = Vec::with_capacity(part);
        (&mut f)
            .take(part as u64)
            .read_to_end(&mut buf)
            .map_err(StorageError::io("read spool file"))?;
        Ok((f, buf))
    })
    .await?;
    *file = Some(f);
    Ok(buf)
}

/// Where journaled multipart uploads are noted.
pub(crate) fn multipart_journal_dir(spool: &FsPath) -> PathBuf {
    spool.join("multipart")
}

struct Journaled {
    mp: Option<std::sync::Arc<dyn object_store::multipart::MultipartStore>>,
    key: object_store::path::Path,
    upload: String,
    entry: PathBuf,
}

impl Drop for Journaled {
    fn drop(&mut self) {
        let Some(mp) = self.mp.take() else { return };
        let (key, upload, entry) = (self.key.clone(), self.upload.clone(), self.entry.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match mp.abort_multipart(&key, &upload).await {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&entry);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not abort a multipart upload; garbage collection tries again after the grace")
                    }
                }
            });
        }
    }
}

/// A multipart upload that is aborted unless it completes. S3 keeps the
/// parts of an upload neither completed nor aborted (and bills for them)
/// until a lifecycle rule removes them, so nothing is left to chance: a
/// failed part or `complete` aborts it, and so does dropping the guard (an
/// error elsewhere, or the request cancelled), from a task of its own since
/// `Drop` cannot wait.
struct Multipart(Option<Box<dyn MultipartUpload>>);

impl Multipart {
    async fn put_part(&mut self, data: PutPayload) -> object_store::Result<()> {
        let upload = self.0.as_mut().expect("not yet completed");
        let r = upload.put_part(data).await;
        if r.is_err() {
            self.abort().await;
        }
        r
    }

    async fn complete(mut self) -> object_store::Result<()> {
        let upload = self.0.as_mut().expect("not yet completed");
        match upload.complete().await {
            Ok(_) => {
                self.0 = None;
                Ok(())
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn abort(&mut self) {
        if let Some(mut u) = self.0.take() {
            if let Err(e) = u.abort().await {
                tracing::warn!(error = %e, "could not abort a multipart upload; a lifecycle rule on the bucket removes its parts");
            }
        }
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if let Some(mut u) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = u.abort().await {
                        tracing::warn!(error = %e, "could not abort a cancelled multipart upload; a lifecycle rule on the bucket removes its parts");
                    }
                });
            }
        }
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // Published spool files were renamed away; this removes the rest.
        if self.spooled {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn poisoned() -> StorageError {
    StorageError::Io {
        op: "write block",
        source: std::io::Error::other("an earlier write to this block failed"),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            op: "run blocking storage task",
            source: std::io::Error::other(e),
        })?
}

async fn read_all(mut file: File) -> Result<Bytes> {
    blocking(move || {
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(StorageError::io("read spool file"))?;
        Ok(Bytes::from(buf))
    })
    .await
}

/// A spool file being written.
///
/// Measured and rejected here: `O_DIRECT` spool writes. They skip the copy
/// into the page cache, but each write then waits for the device, which cut
/// 1 MiB ingest by about a quarter without lowering CPU per byte.
struct Spool {
    file: File,
}

impl Spool {
    /// Create a spool file, creating (durably) the fan-out directories of
    /// the block tree on first use.
    fn create(path: &FsPath, dirs: Option<&DurableDirs>) -> Result<Self> {
        let file = match File::create_new(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dirs.is_some() => {
                let dir = path.parent().expect("spool files have a directory");
                dirs.expect("checked").create(dir)?;
                File::create_new(path).map_err(StorageError::io("create spool file"))?
            }
            Err(e) => return Err(StorageError::io("create spool file")(e)),
        };
        Ok(Self { file })
    }

    fn append(&mut self, chunks: &[Bytes]) -> Result<()> {
        for c in chunks {
            self.file
                .write_all(c)
                .map_err(StorageError::io("write spool file"))?;
        }
        Ok(())
    }

    fn finish(self) -> Result<File> {
        Ok(self.file)
    }
}

/// The durable publish of a spool file on local disk: `fdatasync` the file,
/// rename it into place in the same directory, then `fsync` the directory
/// (and any of its ancestors not yet known durable) so the new name survives
/// power loss.
fn publish_file(
    file: File,
    spool: &FsPath,
    target: &FsPath,
    dirs: &DurableDirs,
) -> Result<PutOutcome> {
    file.sync_data()
        .map_err(StorageError::io("sync block file"))?;
    drop(file);
    std::fs::rename(spool, target).map_err(StorageError::io("publish block"))?;
    dirs.ensure_name(target)?;
    Ok(PutOutcome::Created)
}
