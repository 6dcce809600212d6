//! Packing small blocks on local disk.
//!
//! One file per block costs an inode allocation and two flushes per block;
//! for small blocks that, not the bytes, is what limits ingest. Blocks up to
//! `pack_max_block_bytes` are therefore appended to per-archive pack files by
//! one packer thread, which takes every queued block, writes each pack's new
//! records with one `write`, then makes each touched pack durable with one
//! `fdatasync` (group commit) before acknowledging any of them.
//!
//! A pack is `packs/{archive}/{pack:016x}.pack`, a sequence of records
//! `"CPK1" | len: u32 LE | id: 32 bytes | data`, so a pack can be verified
//! without the metadata. Packs are never appended to after a restart: a crash
//! can leave a torn tail only after the last acknowledged record, and a new
//! process starts new packs. Removing one packed block frees no space by
//! itself; repacking (garbage collection) reclaims it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use coffer_types::BlockId;
use tokio::sync::oneshot;

use crate::durable::DurableDirs;
use crate::{Result, StorageError};

/// Record header: magic, length, id.
pub(crate) const HEADER: u64 = 4 + 4 + 32;
const MAGIC: &[u8; 4] = b"CPK1";
/// Start a new pack once the current one reaches this size.
const PACK_TARGET: u64 = 64 << 20;

/// Where a block's bytes are, as recorded in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Its own object, under the block's key.
    Object,
    /// A record in a pack file of the archive.
    Packed { pack: u64, offset: u64 },
}

impl Location {
    /// The location as stored in the metadata: empty for `Object`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Location::Object => Vec::new(),
            Location::Packed { pack, offset } => {
                let mut v = Vec::with_capacity(17);
                v.push(1);
                v.extend_from_slice(&pack.to_be_bytes());
                v.extend_from_slice(&offset.to_be_bytes());
                v
            }
        }
    }

    /// Read a stored location; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [] => Some(Location::Object),
            [1, rest @ ..] if rest.len() == 16 => Some(Location::Packed {
                pack: u64::from_be_bytes(rest[..8].try_into().ok()?),
                offset: u64::from_be_bytes(rest[8..].try_into().ok()?),
            }),
            _ => None,
        }
    }
}

/// The relative path of a pack.
pub(crate) fn pack_key(archive: &str, pack: u64) -> String {
    format!("packs/{archive}/{pack:016x}.pack")
}

struct Job {
    archive: String,
    id: BlockId,
    chunks: Vec<Bytes>,
    len: u64,
    reply: oneshot::Sender<Result<Location>>,
}

/// The packer: a queue and the thread that drains it.
pub(crate) struct Packer {
    queue: mpsc::Sender<Job>,
    /// The pack each archive appends to now (a pack not here is never
    /// appended to again).
    open: Arc<std::sync::Mutex<HashMap<String, u64>>>,
}

impl Packer {
    pub(crate) fn start(dirs: Arc<DurableDirs>) -> Result<Self> {
        let (queue, rx) = mpsc::channel::<Job>();
        let open: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
        let shown = open.clone();
        std::thread::Builder::new()
            .name("coffer-packer".into())
            .spawn(move || run(&dirs, rx, &shown))
            .map_err(StorageError::io("start the packer"))?;
        Ok(Self { queue, open })
    }

    /// Whether `pack` of `archive` may still be appended to.
    pub(crate) fn is_open(&self, archive: &str, pack: u64) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(archive)
            == Some(&pack)
    }

    /// Append a verified block to its archive's pack and return once it is
    /// durable.
    pub(crate) async fn append(
        &self,
        archive: &str,
        id: BlockId,
        chunks: Vec<Bytes>,
        len: u64,
    ) -> Result<Location> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            archive: archive.to_owned(),
            id,
            chunks,
            len,
            reply,
        };
        self.queue.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StorageError {
    StorageError::Io {
        op: "pack block",
        source: std::io::Error::other("the packer stopped"),
    }
}

struct OpenPack {
    id: u64,
    file: File,
    len: u64,
}

/// Pack ids: the start time in microseconds, then one more per pack, so a
/// restarted process never reuses (or appends to) an earlier pack.
static NEXT_PACK: AtomicU64 = AtomicU64::new(0);

fn next_pack_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let _ = NEXT_PACK.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
    NEXT_PACK.fetch_add(1, Ordering::SeqCst)
}

fn run(
    dirs: &DurableDirs,
    rx: mpsc::Receiver<Job>,
    shown: &std::sync::Mutex<HashMap<String, u64>>,
) {
    let mut open: HashMap<String, OpenPack> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        // Group by archive, keeping arrival order within each.
        let mut by_archive: HashMap<String, Vec<Job>> = HashMap::new();
        for job in batch {
            by_archive.entry(job.archive.clone()).or_default().push(job);
        }
        for (archive, jobs) in by_archive {
            let result = write_jobs(dirs, &archive, &mut open, &jobs, shown);
            match result {
                Ok(locations) => {
                    for (job, loc) in jobs.into_iter().zip(locations) {
                        let _ = job.reply.send(Ok(loc));
                    }
                }
                Err(e) => {
                    // Whatever reached the pack is not acknowledged; start a
                    // fresh pack for the next attempt.
                    open.remove(&archive);
                    let msg = e.to_string();
                    tracing::error!(%archive, error = %msg, "pack write failed");
                    for job in jobs {
                        let _ = job.reply.send(Err(StorageError::Io {
                            op: "pack block",
                            source: std::io::Error::other(msg.clone()),
                        }));
                    }
                }
            }
        }
    }
}

/// Append `jobs` to the archive's pack with one write and one fdatasync.
fn write_jobs(
    dirs: &DurableDirs,
    archive: &str,
    open: &mut HashMap<String, OpenPack>,
    jobs: &[Job],
    shown: &std::sync::Mutex<HashMap<String, u64>>,
) -> Result<Vec<Location>> {
    if open.get(archive).is_some_and(|p| p.len >= PACK_TARGET) {
        open.remove(archive);
    }
    if !open.contains_key(archive) {
        let id = next_pack_id();
        // Shown as open before its file exists: a collector that sees the
        // file also sees that it is open.
        shown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(archive.to_owned(), id);
        let path = dirs.root().join(pack_key(archive, id));
        dirs.create(path.parent().expect("packs have a directory"))?;
        let file = File::create_new(&path).map_err(StorageError::io("create pack"))?;
        // The pack's name must be durable before any record in it is acknowledged.
        dirs.ensure_name(&path)?;
        open.insert(archive.to_owned(), OpenPack { id, file, len: 0 });
    }
    let pack = open.get_mut(archive).expect("just opened");
    let total: u64 = jobs.iter().map(|j| HEADER + j.len).sum();
    let mut buf = Vec::with_capacity(total as usize);
    let mut locations = Vec::with_capacity(jobs.len());
    for j in jobs {
        locations.push(Location::Packed {
            pack: pack.id,
            offset: pack.len + buf.len() as u64,
        });
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(j.len as u32).to_le_bytes());
        buf.extend_from_slice(j.id.as_bytes());
        for c in &j.chunks {
            buf.extend_from_slice(c);
        }
    }
    pack.file
        .write_all(&buf)
        .map_err(StorageError::io("write pack"))?;
    pack.file
        .sync_data()
        .map_err(StorageError::io("sync pack"))?;
    pack.len += buf.len() as u64;
    Ok(locations)
}

/// Parse the record headers of a pack's bytes: `(id, offset, len)` of every
/// whole record, stopping at the first torn or foreign one.
pub(crate) fn records(bytes: &[u8]) -> Vec<(BlockId, u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + HEADER as usize <= bytes.len() {
        let h = &bytes[at..at + HEADER as usize];
        if &h[..4] != MAGIC {
            break;
        }
        let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        let end = at + HEADER as usize + len;
        if end > bytes.len() {
            break;
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&h[8..40]);
        out.push((BlockId::from_bytes(id), at as u64, len as u64));
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(body: &[u8]) -> Vec<u8> {
        let mut r = MAGIC.to_vec();
        r.extend_from_slice(&(body.len() as u32).to_le_bytes());
        r.extend_from_slice(BlockId::of(body).as_bytes());
        r.extend_from_slice(body);
        r
    }

    proptest! {
        /// Any bytes (a pack torn or overwritten anywhere): the records
        /// found lie inside the bytes, in order, never a panic.
        #[test]
        fn fuzz_pack_reader_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut end = 0;
            for (_, at, len) in records(&bytes) {
                prop_assert!(at >= end);
                end = at + HEADER + len;
                prop_assert!(end as usize <= bytes.len());
            }
        }

        /// Packs as the packer writes them read back whole, and a torn
        /// tail ends the list at the last whole record.
        #[test]
        fn fuzz_pack_reader_reads_what_the_packer_writes(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
            tear in 0usize..64,
        ) {
            let mut bytes = Vec::new();
            for b in &bodies {
                bytes.extend(record(b));
            }
            let found = records(&bytes);
            prop_assert_eq!(found.len(), bodies.len());
            for ((id, at, len), b) in found.iter().zip(&bodies) {
                prop_assert_eq!(*id, BlockId::of(b));
                let s = (*at + HEADER) as usize;
                prop_assert_eq!(&bytes[s..s + *len as usize], &b[..]);
            }
            if !bodies.is_empty() && tear > 0 {
                let cut = bytes.len().saturating_sub(tear.min(bytes.len()));
                let torn = records(&bytes[..cut]);
                let whole = found.iter().filter(|(_, at, len)| (at + HEADER + len) as usize <= cut).count();
                prop_assert_eq!(torn.len(), whole);
            }
        }
    }

    #[test]
    fn locations_round_trip() {
        for l in [
            Location::Object,
            Location::Packed {
                pack: 7,
                offset: 1 << 40,
            },
        ] {
            assert_eq!(Location::decode(&l.encode()), Some(l));
        }
        assert_eq!(Location::decode(&[9]), None);
    }

    #[test]
    fn a_torn_tail_ends_the_record_list() {
        let mut bytes = Vec::new();
        for body in [&b"one"[..], b"second"] {
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(BlockId::of(body).as_bytes());
            bytes.extend_from_slice(body);
        }
        let whole = records(&bytes);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].0, BlockId::of(b"second"));
        assert_eq!(records(&bytes[..bytes.len() - 1]).len(), 1);
    }
}
