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
use object_store::{ObjectStoreExt, PutMode, PutPayload};

use crate::config::Backend;
use crate::store::BlockStore;
use crate::{Result, StorageError};

/// Gather this many bytes before a write to the spool file.
const FLUSH_AT: usize = 256 << 10;

/// What publishing did.
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
pub struct BlockWriter {
    store: BlockStore,
    archive: String,
    path: PathBuf,
    state: Option<(File, blake3::Hasher)>,
    pending: Vec<Bytes>,
    pending_len: usize,
    len: u64,
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
    pub(crate) async fn create(store: BlockStore, archive: String) -> Result<Self> {
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd).map_err(|e| StorageError::Io {
            op: "make spool name",
            source: std::io::Error::other(e),
        })?;
        let path = store
            .inner
            .spool_dir
            .join(format!("{}.part", hex::encode(rnd)));
        let p = path.clone();
        let file =
            blocking(move || File::create_new(&p).map_err(StorageError::io("create spool file")))
                .await?;
        Ok(Self {
            store,
            archive,
            path,
            state: Some((file, blake3::Hasher::new())),
            pending: Vec::new(),
            pending_len: 0,
            len: 0,
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

    async fn flush(&mut self) -> Result<()> {
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let (mut file, mut hasher) = self.state.take().ok_or_else(poisoned)?;
        let (file, hasher) = blocking(move || {
            for c in &chunks {
                hasher.update(c);
                file.write_all(c)
                    .map_err(StorageError::io("write spool file"))?;
            }
            Ok((file, hasher))
        })
        .await?;
        self.state = Some((file, hasher));
        Ok(())
    }

    /// The blake3 of everything written: the id the body deserves.
    pub async fn finish(&mut self) -> Result<BlockId> {
        self.flush().await?;
        let (_, hasher) = self.state.as_ref().ok_or_else(poisoned)?;
        Ok(BlockId::from_hash(hasher.finalize()))
    }

    /// Publish the body as block `id` and return once it is on stable
    /// storage. The caller must have checked that [`BlockWriter::finish`]
    /// returned `id`. On failure nothing is visible under `id` that was not
    /// there before.
    pub async fn publish(mut self, id: BlockId) -> Result<PutOutcome> {
        self.flush().await?;
        let (file, _) = self.state.take().ok_or_else(poisoned)?;
        let inner = &self.store.inner;
        match inner.backend {
            Backend::Disk => {
                let root = inner.local_root.clone().expect("disk has a root");
                let target = root.join(self.store.key(&self.archive, &id).as_ref());
                let spool = self.path.clone();
                blocking(move || publish_file(file, &spool, &target, &root)).await
            }
            Backend::Memory | Backend::S3 => {
                let _slot = inner.upload_slots.acquire().await.map_err(|_| poisoned())?;
                let file = blocking(move || {
                    use std::io::Seek;
                    let mut file = file;
                    file.rewind().map_err(StorageError::io("read spool file"))?;
                    Ok(file)
                })
                .await?;
                self.publish_object(file, id).await
            }
        }
    }

    async fn publish_object(&self, file: File, id: BlockId) -> Result<PutOutcome> {
        let key = self.store.key(&self.archive, &id);
        let os = &self.store.inner.os;
        let part = self.store.inner.part_size;
        if self.len as usize <= part {
            let body = read_all(file).await?;
            return match os
                .put_opts(&key, PutPayload::from(body.clone()), PutMode::Create.into())
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
            };
        }
        if self.store.head(&self.archive, &id).await?.is_some() {
            return Ok(PutOutcome::Present);
        }
        let mut upload = os
            .put_multipart(&key)
            .await
            .map_err(|e| self.store.classify("start multipart upload", e))?;
        let mut file = Some(file);
        loop {
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
            file = Some(f);
            if buf.is_empty() {
                break;
            }
            if let Err(e) = upload.put_part(PutPayload::from(buf)).await {
                let _ = upload.abort().await;
                return Err(self.store.classify("upload block part", e));
            }
        }
        upload
            .complete()
            .await
            .map_err(|e| self.store.classify("complete multipart upload", e))?;
        Ok(PutOutcome::Created)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // Published spool files were renamed away; this removes the rest.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn poisoned() -> StorageError {
    StorageError::Io {
        op: "write block",
        source: std::io::Error::other("an earlier write to this block failed"),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
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

/// The durable publish of a spool file on local disk: `fdatasync` the file,
/// rename it into place (creating fan-out directories durably on first use),
/// then `fsync` the directory so the new name survives power loss.
fn publish_file(file: File, spool: &FsPath, target: &FsPath, root: &FsPath) -> Result<PutOutcome> {
    if std::fs::metadata(target).is_ok() {
        return Ok(PutOutcome::Present);
    }
    file.sync_data()
        .map_err(StorageError::io("sync block file"))?;
    drop(file);
    let dir = target.parent().expect("block keys have a directory");
    if let Err(e) = std::fs::rename(spool, target) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(StorageError::io("publish block")(e));
        }
        create_dirs_durably(dir, root)?;
        std::fs::rename(spool, target).map_err(StorageError::io("publish block"))?;
    }
    sync_dir(dir)?;
    Ok(PutOutcome::Created)
}

fn create_dirs_durably(dir: &FsPath, root: &FsPath) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() && d != root {
        missing.push(d.to_path_buf());
        d = d.parent().unwrap_or(root);
    }
    std::fs::create_dir_all(dir).map_err(StorageError::io("create block directory"))?;
    // Each new directory's entry lives in its parent: sync the parents.
    for m in missing.iter().rev() {
        if let Some(p) = m.parent() {
            sync_dir(p)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &FsPath) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("sync block directory"))
}
