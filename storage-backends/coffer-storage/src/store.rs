//! [`BlockStore`]: key layout, reads, deletes, listing and readiness over an
//! `object_store` backend.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coffer_types::BlockId;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
};
use tokio::sync::Semaphore;

use crate::config::{Backend, StorageConfig};
use crate::durable::DurableDirs;
use crate::pack::{pack_key, records, Location, Packer, HEADER};
use crate::writer::{blocking, BlockWriter};
use crate::{Result, StorageError};

/// Disk reads go in pieces of this size (most blocks are one piece). It is
/// also what a reader that stops reading keeps in memory per stream.
const READ_PIECE: u64 = 512 << 10;

/// Read up to [`READ_PIECE`] bytes of `file` from `at` (short of `end`):
/// the piece, and where the next one starts.
fn read_piece(file: &std::fs::File, at: u64, end: u64) -> Result<(Bytes, u64)> {
    let n = end.saturating_sub(at).min(READ_PIECE);
    Ok((read_at(file, at, n)?, at + n))
}

/// `len` bytes of `file` from `at`.
fn read_at(file: &std::fs::File, at: u64, len: u64) -> Result<Bytes> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, at)
        .map_err(StorageError::io("read block"))?;
    Ok(Bytes::from(buf))
}

/// Open a block's file (or its pack) under the local root.
fn open_local(path: &FsPath, id: &BlockId) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound { id: *id },
        _ => StorageError::io("open block")(e),
    })
}

/// Where a block's bytes start in its open file, and how many there are: a
/// block file is all block; a packed record's header must name the block.
fn locate_local(file: &std::fs::File, id: &BlockId, at: Location) -> Result<(u64, u64)> {
    match at {
        Location::Object => Ok((
            0,
            file.metadata()
                .map_err(StorageError::io("read block metadata"))?
                .len(),
        )),
        Location::Packed { offset, .. } => {
            let mut h = [0u8; HEADER as usize];
            file.read_exact_at(&mut h, offset)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => StorageError::NotFound { id: *id },
                    _ => StorageError::io("read pack")(e),
                })?;
            let size = parse_header(&h, id).ok_or_else(|| bad_header(id, offset))?;
            Ok((offset + HEADER, size))
        }
    }
}

/// A stream of a block's bytes.
pub type BlockStream = BoxStream<'static, Result<Bytes>>;

/// A byte range of a block, validated against the block's size by the caller.
pub type BlockRange = Range<u64>;

/// The block store. Cloning is cheap and clones share everything.
#[derive(Clone)]
pub struct BlockStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    pub(crate) os: Arc<dyn ObjectStore>,
    /// Key prefix inside the backend (S3 `prefix`), always ending in `/` or empty.
    pub(crate) prefix: String,
    /// With `disk`: the directory blocks are published into.
    pub(crate) local_root: Option<PathBuf>,
    /// With `disk`: which directories under `local_root` are durable.
    pub(crate) dirs: Option<Arc<DurableDirs>>,
    /// Where upload bodies are spooled while they are hashed. On disk, a
    /// directory beside the blocks so that publishing is a rename.
    pub(crate) spool_dir: PathBuf,
    pub(crate) reserve_bytes: u64,
    pub(crate) part_size: usize,
    pub(crate) upload_slots: Semaphore,
    pub(crate) description: String,
    /// With `disk`: blocks up to `pack_max` bytes go into pack files.
    pub(crate) packer: Option<Packer>,
    pub(crate) pack_max: u64,
    /// With `s3`: the same client as `os`, for multipart uploads whose ids
    /// are journaled (`DATA_DIR/spool/multipart`), so that an upload a
    /// crash left behind is aborted by a later collection.
    pub(crate) multipart: Option<Arc<dyn object_store::multipart::MultipartStore>>,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inner.description)
    }
}

impl BlockStore {
    /// Open the configured backend. `data_dir` is the server's data directory
    /// (default home of disk blocks and of the upload spool). Opening does not
    /// contact a remote backend; [`BlockStore::check`] does.
    pub fn open(cfg: &StorageConfig, data_dir: &FsPath) -> Result<Self> {
        cfg.validate().map_err(StorageError::Config)?;
        let mkdir = |p: &FsPath| {
            std::fs::create_dir_all(p).map_err(StorageError::io("create storage directory"))
        };
        let mut multipart: Option<Arc<dyn object_store::multipart::MultipartStore>> = None;
        let (os, dirs, spool_dir, prefix, part_size, slots, description): (
            Arc<dyn ObjectStore>,
            _,
            _,
            _,
            _,
            _,
            _,
        ) = match cfg.backend {
            Backend::Disk => {
                let dirs = DurableDirs::open(
                    &cfg.path.clone().unwrap_or_else(|| data_dir.join("blocks")),
                )?;
                let root = dirs.root().to_path_buf();
                // Disk uploads are spooled beside their target (see
                // `BlockWriter`); leftovers of a crash are removed by
                // `sweep_spool` (the core's spool-sweep worker).
                let spool = root.clone();
                let fs = LocalFileSystem::new_with_prefix(&root).map_err(|source| {
                    StorageError::Backend {
                        op: "open block directory",
                        source,
                    }
                })?;
                let d = format!("disk {}", root.display());
                (
                    Arc::new(fs),
                    Some(Arc::new(dirs)),
                    spool,
                    String::new(),
                    usize::MAX,
                    1 << 20,
                    d,
                )
            }
            Backend::Memory => {
                let spool = data_dir.join("spool");
                mkdir(&spool)?;
                (
                    Arc::new(InMemory::new()),
                    None,
                    spool,
                    String::new(),
                    8 << 20,
                    1 << 20,
                    "memory".to_string(),
                )
            }
            Backend::S3 => {
                let s3 = cfg.s3.as_ref().expect("validated: s3 table present");
                let spool = data_dir.join("spool");
                mkdir(&spool)?;
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_allow_http(s3.allow_http)
                    .with_client_options(
                        ClientOptions::new()
                            .with_allow_http(s3.allow_http)
                            .with_timeout(Duration::from_secs(s3.request_timeout_secs))
                            .with_connect_timeout(Duration::from_secs(5)),
                    )
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig::default(),
                        max_retries: s3.max_retries,
                        retry_timeout: Duration::from_secs(s3.retry_timeout_secs),
                    });
                if let Some(ep) = &s3.endpoint {
                    b = b.with_endpoint(ep);
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &s3.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                let os = b
                    .build()
                    .map_err(|e| StorageError::Config(format!("storage.s3: {e}")))?;
                let prefix = match s3.prefix.as_deref().map(|p| p.trim_matches('/')) {
                    Some(p) if !p.is_empty() => format!("{p}/"),
                    _ => String::new(),
                };
                let d = format!(
                    "s3 bucket {} at {}",
                    s3.bucket,
                    s3.endpoint.as_deref().unwrap_or("aws")
                );
                let os = Arc::new(os);
                multipart = Some(os.clone());
                (
                    os,
                    None,
                    spool,
                    prefix,
                    s3.part_size,
                    s3.max_concurrent_uploads,
                    d,
                )
            }
        };
        let local_root = dirs.as_ref().map(|d| d.root().to_path_buf());
        let packer = match (&dirs, cfg.pack_max_block_bytes) {
            (Some(dirs), n) if n > 0 => Some(Packer::start(dirs.clone())?),
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                multipart,
                packer,
                pack_max: cfg.pack_max_block_bytes,
                backend: cfg.backend,
                os,
                prefix,
                local_root,
                dirs,
                spool_dir,
                reserve_bytes: cfg.reserve_bytes,
                part_size,
                upload_slots: Semaphore::new(slots),
                description,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// A short description for logs, e.g. `disk /var/lib/coffer/blocks`.
    pub fn describe(&self) -> &str {
        &self.inner.description
    }

    /// Start writing a block of archive `archive` that claims to be `claimed`
    /// (the id in the request). Fails with [`StorageError::Full`] when free
    /// space is below the configured reserve (plus `expected_len` when the
    /// caller knows the body's length). Only a body that hashes to `claimed`
    /// may be published.
    pub fn begin(
        &self,
        archive: &str,
        claimed: &BlockId,
        expected_len: Option<u64>,
    ) -> Result<BlockWriter> {
        self.ensure_space(expected_len.unwrap_or(0))?;
        BlockWriter::create(self.clone(), archive.to_owned(), claimed)
    }

    /// Refuse writes while free space is below the reserve. Uploads are
    /// spooled under `spool_dir` (on disk: the block directory itself).
    pub fn ensure_space(&self, needed: u64) -> Result<()> {
        let d = self.inner.spool_dir.as_path();
        let st = rustix::fs::statvfs(d).map_err(|e| StorageError::Io {
            op: "read free space",
            source: e.into(),
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < self.inner.reserve_bytes.saturating_add(needed) {
            return Err(StorageError::Full {
                detail: format!(
                    "{free} bytes free at {}, the configured reserve is {} bytes",
                    d.display(),
                    self.inner.reserve_bytes
                ),
            });
        }
        Ok(())
    }

    /// The key of a block: `[prefix]archives/{archive}/{first two hex}/{hex}`.
    pub fn key(&self, archive: &str, id: &BlockId) -> Path {
        let hex = id.to_hex();
        Path::from(format!(
            "{}archives/{archive}/{}/{hex}",
            self.inner.prefix,
            &hex[..2]
        ))
    }

    /// Size of a stored block, or `None` if it is absent. A packed block is
    /// checked against its record header.
    pub async fn head(&self, archive: &str, id: &BlockId, at: Location) -> Result<Option<u64>> {
        match at {
            Location::Object => match self.inner.os.head(&self.key(archive, id)).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.classify("read block metadata", e)),
            },
            Location::Packed { pack, offset } => {
                let key = Path::from(pack_key(archive, pack));
                match self.inner.os.get_range(&key, offset..offset + HEADER).await {
                    Ok(h) => parse_header(&h, id)
                        .map(Some)
                        .ok_or_else(|| bad_header(id, offset)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.classify("read pack", e)),
                }
            }
        }
    }

    /// Stream a block, or the byte range `range` of it (validated by the
    /// caller against the block's size).
    pub async fn get(
        &self,
        archive: &str,
        id: &BlockId,
        at: Location,
        range: Option<BlockRange>,
    ) -> Result<BlockStream> {
        if let Some(root) = &self.inner.local_root {
            return self.get_local(root, archive, id, at, range).await;
        }
        let (key, range) = match at {
            Location::Object => (self.key(archive, id), range),
            Location::Packed { pack, offset } => {
                let size = self
                    .head(archive, id, at)
                    .await?
                    .ok_or(StorageError::NotFound { id: *id })?;
                let r = range.unwrap_or(0..size);
                let start = offset + HEADER;
                (
                    Path::from(pack_key(archive, pack)),
                    Some(start + r.start..start + r.end),
                )
            }
        };
        if range.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(futures::stream::empty().boxed());
        }
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let res = match self.inner.os.get_opts(&key, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::NotFound { id: *id })
            }
            Err(e) => return Err(self.classify("read block", e)),
        };
        let store = self.clone();
        Ok(res
            .into_stream()
            .map_err(move |e| store.classify("read block", e))
            .boxed())
    }

    /// [`BlockStore::get`] on disk. object_store's file stream reads 8 KiB
    /// per blocking task: serving a 1 MiB block took 128 thread hand-offs,
    /// and those, not the reads, were most of the server's CPU during a
    /// restore. Here one blocking task opens the file (checking a packed
    /// record's header) and reads the first `READ_PIECE` bytes, which for
    /// most blocks is all of them; each further one reads the next piece.
    async fn get_local(
        &self,
        root: &FsPath,
        archive: &str,
        id: &BlockId,
        at: Location,
        range: Option<BlockRange>,
    ) -> Result<BlockStream> {
        let id = *id;
        let path = root.join(self.local_key(archive, &id, at));
        let (file, (first, start), end) = blocking(move || {
            let file = open_local(&path, &id)?;
            let (base, size) = locate_local(&file, &id, at)?;
            let r = range.unwrap_or(0..size);
            // The first piece comes with the open: most blocks are one piece,
            // so most reads take one blocking task, not two.
            let first = read_piece(&file, base + r.start, base + r.end)?;
            Ok((Arc::new(file), first, base + r.end))
        })
        .await?;
        let rest = futures::stream::try_unfold(start, move |at| {
            let file = file.clone();
            async move {
                if at >= end {
                    return Ok(None);
                }
                let (piece, next) = blocking(move || read_piece(&file, at, end)).await?;
                Ok(Some((piece, next)))
            }
        });
        // An empty block is an empty stream.
        let first = (!first.is_empty()).then_some(Ok(first));
        Ok(futures::stream::iter(first).chain(rest).boxed())
    }

    /// Where a block's bytes are under the local root: its own file, or its
    /// pack.
    fn local_key(&self, archive: &str, id: &BlockId, at: Location) -> String {
        match at {
            Location::Object => self.key(archive, id).to_string(),
            Location::Packed { pack, .. } => pack_key(archive, pack),
        }
    }

    /// Several whole blocks, in the order given; `None` for a block whose
    /// bytes are not there. On disk this is one blocking task that opens
    /// each file once (the small blocks of a backup sit side by side in its
    /// pack); elsewhere, a read per block, a few at a time.
    pub async fn read_many(
        &self,
        archive: &str,
        blocks: Vec<(BlockId, Location)>,
    ) -> Result<Vec<Option<Bytes>>> {
        // A record that is not the block reads as no bytes: the caller's
        // check of the bytes against the id then fails, as for any damaged
        // copy, and the others are still answered.
        let found = |r: Result<Bytes>| match r {
            Ok(b) => Ok(Some(b)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(StorageError::Corrupt { .. }) => Ok(Some(Bytes::new())),
            Err(e) => Err(e),
        };
        let Some(root) = &self.inner.local_root else {
            let reads = blocks
                .into_iter()
                .map(|(id, at)| async move { found(self.read(archive, &id, at).await) });
            return futures::stream::iter(reads).buffered(8).try_collect().await;
        };
        let paths: Vec<PathBuf> = blocks
            .iter()
            .map(|(id, at)| root.join(self.local_key(archive, id, *at)))
            .collect();
        blocking(move || {
            let mut last: Option<(PathBuf, std::fs::File)> = None;
            let mut out = Vec::with_capacity(blocks.len());
            for ((id, at), path) in blocks.into_iter().zip(paths) {
                let file = match last.take() {
                    Some((p, f)) if p == path => f,
                    _ => match open_local(&path, &id) {
                        Ok(f) => f,
                        Err(e) => {
                            out.push(found(Err(e))?);
                            continue;
                        }
                    },
                };
                let bytes = locate_local(&file, &id, at)
                    .and_then(|(base, size)| read_at(&file, base, size));
                last = Some((path, file));
                out.push(found(bytes)?);
            }
            Ok(out)
        })
        .await
    }

    /// Read a whole block into memory (for small blocks and tests).
    pub async fn read(&self, archive: &str, id: &BlockId, at: Location) -> Result<Bytes> {
        let parts: Vec<Bytes> = self.get(archive, id, at, None).await?.try_collect().await?;
        Ok(parts.concat().into())
    }

    /// Delete blocks of `archive`, with a result per block (in the order
    /// given); deleting an absent block succeeds. Callers above this layer
    /// must pass the destruction gate first (DESIGN §3.6). On disk: one
    /// blocking pass of unlinks, then one sync per directory touched (an
    /// unlink is durable once its directory is synced, so a journal entry
    /// cleared after this never leaves bytes behind). On S3: bulk
    /// `DeleteObjects` requests (a thousand keys each) through
    /// `object_store`. A packed block's bytes stay in its pack until the
    /// pack is rewritten: nothing to do here.
    pub async fn delete(&self, archive: &str, blocks: &[(BlockId, Location)]) -> Vec<Result<()>> {
        let keys: Vec<Option<Path>> = blocks
            .iter()
            .map(|(id, at)| match at {
                Location::Packed { .. } => None,
                Location::Object => Some(self.key(archive, id)),
            })
            .collect();
        if let Some(root) = &self.inner.local_root {
            let paths: Vec<Option<PathBuf>> = keys
                .iter()
                .map(|k| k.as_ref().map(|k| root.join(k.as_ref())))
                .collect();
            let n = paths.len();
            return blocking(move || {
                let mut out: Vec<Result<()>> = Vec::with_capacity(n);
                let mut dirs: std::collections::BTreeMap<PathBuf, Vec<usize>> = Default::default();
                for (i, p) in paths.iter().enumerate() {
                    let Some(p) = p else {
                        out.push(Ok(()));
                        continue;
                    };
                    match std::fs::remove_file(p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            out.push(Err(StorageError::io("delete block")(e)));
                            continue;
                        }
                    }
                    out.push(Ok(()));
                    if let Some(d) = p.parent() {
                        dirs.entry(d.to_path_buf()).or_default().push(i);
                    }
                }
                // The unlinks are durable once their directories are synced
                // (also where the file was gone already: an unlink a crash
                // interrupted may not be; no directory, nothing to sync).
                for (d, at) in dirs {
                    let synced = match std::fs::File::open(&d) {
                        Ok(f) => f.sync_all(),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = synced {
                        let why = e.to_string();
                        for i in at {
                            out[i] = Err(StorageError::io("sync block directory")(
                                std::io::Error::other(why.clone()),
                            ));
                        }
                    }
                }
                Ok(out)
            })
            .await
            .unwrap_or_else(|e| {
                let why = e.to_string();
                (0..n)
                    .map(|_| {
                        Err(StorageError::Io {
                            op: "delete blocks",
                            source: std::io::Error::other(why.clone()),
                        })
                    })
                    .collect()
            });
        }
        let wanted: Vec<Path> = keys.iter().flatten().cloned().collect();
        let mut gone: std::collections::HashSet<Path> = Default::default();
        let mut failed: Vec<String> = Vec::new();
        let mut results = self
            .inner
            .os
            .delete_stream(futures::stream::iter(wanted.into_iter().map(Ok)).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(p) => {
                    gone.insert(p);
                }
                Err(object_store::Error::NotFound { path, .. }) => {
                    gone.insert(Path::from(path));
                }
                Err(e) => failed.push(self.classify("delete blocks", e).to_string()),
            }
        }
        keys.into_iter()
            .map(|k| match k {
                None => Ok(()),
                Some(k) if gone.contains(&k) => Ok(()),
                Some(_) => Err(StorageError::Unavailable {
                    op: "delete blocks",
                    source: format!(
                        "the store did not confirm the delete{}",
                        failed.first().map(|f| format!(": {f}")).unwrap_or_default()
                    )
                    .into(),
                }),
            })
            .collect()
    }

    /// Abort the multipart uploads this server started and a crash left
    /// unfinished, journaled before `older_than` (S3 keeps, and bills, the
    /// parts of an upload neither completed nor aborted). Returns how many.
    pub async fn abort_stale_uploads(&self, older_than: std::time::SystemTime) -> Result<u64> {
        let Some(mp) = &self.inner.multipart else {
            return Ok(0);
        };
        let dir = crate::writer::multipart_journal_dir(&self.inner.spool_dir);
        let entries = blocking(move || {
            let mut out = Vec::new();
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(StorageError::io("read the multipart journal")(e)),
            };
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < older_than);
                if !old {
                    continue;
                }
                if e.file_name().to_string_lossy().starts_with('.') {
                    // An entry a crash cut before its rename: nothing was
                    // uploaded under it yet.
                    let _ = std::fs::remove_file(e.path());
                } else if let Ok(text) = std::fs::read_to_string(e.path()) {
                    out.push((e.path(), text));
                }
            }
            Ok(out)
        })
        .await?;
        let mut n = 0;
        for (path, text) in entries {
            let Some((key, id)) = text.trim_end().split_once('\n') else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            match mp.abort_multipart(&Path::from(key), &id.to_string()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.classify("abort a multipart upload", e)),
            }
            let _ = std::fs::remove_file(&path);
            n += 1;
        }
        Ok(n)
    }

    /// Whether this store packs small blocks (disk).
    pub fn packs(&self) -> bool {
        self.inner.packer.is_some()
    }

    /// Whether `pack` of `archive` is still appended to (it is never
    /// rewritten then).
    pub fn pack_open(&self, archive: &str, pack: u64) -> bool {
        self.inner
            .packer
            .as_ref()
            .is_some_and(|p| p.is_open(archive, pack))
    }

    /// The packs of `archive` with their sizes in bytes.
    pub async fn pack_sizes(&self, archive: &str) -> Result<Vec<(u64, u64)>> {
        if self.inner.packer.is_none() {
            return Ok(Vec::new());
        }
        let metas: Vec<_> = self
            .inner
            .os
            .list(Some(&Path::from(format!("packs/{archive}"))))
            .try_collect()
            .await
            .map_err(|e| self.classify("list packs", e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let pack = m
                    .location
                    .filename()
                    .and_then(|f| f.strip_suffix(".pack"))
                    .and_then(|h| u64::from_str_radix(h, 16).ok())?;
                Some((pack, m.size))
            })
            .collect())
    }

    /// The records of a pack: `(id, offset, length)` (a pack not found has
    /// none). Read whole, sequentially: far cheaper than a read per header.
    pub async fn pack_records(&self, archive: &str, pack: u64) -> Result<Vec<(BlockId, u64, u64)>> {
        let Some(root) = &self.inner.local_root else {
            return Ok(Vec::new());
        };
        let path = root.join(pack_key(archive, pack));
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(records(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StorageError::io("read pack")(e)),
        })
        .await
    }

    /// Append a block (read from its old pack) to the archive's current
    /// pack, durably: the copy a pack rewrite makes.
    pub async fn repack(&self, archive: &str, id: BlockId, bytes: Bytes) -> Result<Location> {
        let Some(p) = &self.inner.packer else {
            return Err(StorageError::Config(
                "this store does not pack blocks".into(),
            ));
        };
        let len = bytes.len() as u64;
        p.append(archive, id, vec![bytes], len).await
    }

    /// Delete a whole pack file (durably: its directory is synced). Callers
    /// above this layer must pass the destruction gate first, after every
    /// live record was copied out and the index switched.
    pub async fn delete_pack(&self, archive: &str, pack: u64) -> Result<()> {
        let Some(root) = &self.inner.local_root else {
            return Ok(());
        };
        let path = root.join(pack_key(archive, pack));
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(StorageError::io("delete pack")(e)),
            }
            let dir = path.parent().expect("packs have a directory");
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(StorageError::io("sync pack directory"))
        })
        .await
    }

    /// Every block stored for `archive` (as its own object or in a pack),
    /// with its size and location, in no set order. Reads every pack: for
    /// scrubs and tests, not the request path.
    pub async fn list(&self, archive: &str) -> Result<Vec<(BlockId, u64, Location)>> {
        let prefix = Path::from(format!("{}archives/{archive}", self.inner.prefix));
        let metas: Vec<_> = self
            .inner
            .os
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.classify("list blocks", e))?;
        let mut out: Vec<_> = metas
            .into_iter()
            .filter_map(|m| {
                let id = m.location.filename()?.parse().ok()?;
                Some((id, m.size, Location::Object))
            })
            .collect();
        if self.inner.packer.is_some() {
            let packs: Vec<_> = self
                .inner
                .os
                .list(Some(&Path::from(format!("packs/{archive}"))))
                .try_collect()
                .await
                .map_err(|e| self.classify("list packs", e))?;
            for m in packs {
                let Some(pack) = m
                    .location
                    .filename()
                    .and_then(|f| f.strip_suffix(".pack"))
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                else {
                    continue;
                };
                let bytes = self
                    .inner
                    .os
                    .get(&m.location)
                    .await
                    .map_err(|e| self.classify("read pack", e))?
                    .bytes()
                    .await
                    .map_err(|e| self.classify("read pack", e))?;
                for (id, offset, len) in records(&bytes) {
                    out.push((id, len, Location::Packed { pack, offset }));
                }
            }
        }
        Ok(out)
    }

    /// Remove upload spool files last written before `cutoff`: no upload
    /// will finish them (their process is gone, or the upload was abandoned).
    /// Blocking; walks the spool directory (on disk, the block directory's
    /// fan-out). Returns how many were removed.
    pub fn sweep_spool(&self, cutoff: std::time::SystemTime) -> Result<u64> {
        sweep_parts(&self.inner.spool_dir, cutoff)
    }

    /// Whether the backend can be reached and written: the readiness probe.
    pub async fn check(&self) -> Result<()> {
        match self.inner.backend {
            Backend::Memory => Ok(()),
            Backend::Disk => {
                let root = self.inner.local_root.as_ref().expect("disk has a root");
                std::fs::metadata(root).map_err(StorageError::io("read block directory"))?;
                Ok(())
            }
            Backend::S3 => {
                let probe = Path::from(format!("{}coffer-readiness-probe", self.inner.prefix));
                match self.inner.os.head(&probe).await {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.classify("probe storage", e)),
                }
            }
        }
    }

    /// Map a backend error: for a remote backend anything but a definite
    /// answer means "unreachable, retry later".
    pub(crate) fn classify(&self, op: &'static str, e: object_store::Error) -> StorageError {
        match (&self.inner.backend, e) {
            (_, object_store::Error::NotFound { path, .. }) => {
                match Path::from(path).filename().and_then(|f| f.parse().ok()) {
                    Some(id) => StorageError::NotFound { id },
                    None => StorageError::Io {
                        op,
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    },
                }
            }
            (Backend::S3, e) => StorageError::Unavailable {
                op,
                source: Box::new(e),
            },
            (_, e) => StorageError::Backend { op, source: e },
        }
    }
}

/// A packed record whose header does not name the block it should hold.
fn bad_header(id: &BlockId, offset: u64) -> StorageError {
    StorageError::Corrupt {
        id: *id,
        detail: format!("the pack record at offset {offset} does not name it"),
    }
}

/// The size in a record header at the start of `h`, if it names `id`.
fn parse_header(h: &[u8], id: &BlockId) -> Option<u64> {
    if h.len() < HEADER as usize || &h[..4] != b"CPK1" || &h[8..40] != id.as_bytes() {
        return None;
    }
    Some(u32::from_le_bytes(h[4..8].try_into().ok()?) as u64)
}

/// Remove the spool files under `dir` (and, on disk, its fan-out
/// directories) last written before `cutoff`; returns how many.
fn sweep_parts(dir: &FsPath, cutoff: std::time::SystemTime) -> Result<u64> {
    let mut dirs = vec![dir.to_path_buf()];
    let mut removed = 0u64;
    while let Some(d) = dirs.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // A fan-out directory removed meanwhile is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(StorageError::io("read the spool directory")(e)),
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() {
                dirs.push(e.path());
            } else if name.starts_with('.') && name.ends_with(".part") {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < cutoff);
                if old && std::fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}
