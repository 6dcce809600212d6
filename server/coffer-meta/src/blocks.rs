//! The blocks an archive holds, and the pins that keep the blocks an open
//! session uploaded or was told about.

use coffer_types::{BlockId, Name, UnixMillis};
use sled::Transactional;

use crate::archives::ArchiveRecord;
use crate::engine::{abort, enc, engine, key, prefix, tx_dec, tx_err};
use crate::{MetaError, MetaStore, Result};

/// A block the archive holds: size, server-stamped time, and where the
/// storage put it (opaque bytes the storage layer defines; empty for a block
/// stored as its own object). Encoded as `size | stored_at | location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    pub size: u64,
    pub stored_at: UnixMillis,
    pub location: Vec<u8>,
}

impl BlockRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.location.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        out.extend_from_slice(&self.location);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let stored_at = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self {
            size,
            stored_at,
            location: bytes[16..].to_vec(),
        })
    }
}

/// What is wrong with a stored block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Damage {
    /// Its bytes do not match its id.
    Corrupt = 0,
    /// Its bytes are gone from the storage.
    Missing = 1,
}

/// A block found damaged and not healed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBlock {
    pub archive: Name,
    pub id: BlockId,
    pub kind: Damage,
    pub found_at: UnixMillis,
}

/// A block record with where it is.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// The record's key, the cursor of [`MetaStore::blocks_page`].
    pub key: Vec<u8>,
    pub archive: Name,
    pub id: BlockId,
    pub record: BlockRecord,
}

/// The key of block `id`'s record in `archive` (and of its damage mark).
fn block_key(archive: &Name, id: &BlockId) -> Vec<u8> {
    key(&[archive.as_str().as_bytes(), id.as_bytes()])
}

/// The archive and block of a `block_key`; `None` for a foreign key.
fn split_block_key(k: &[u8]) -> Option<(Name, BlockId)> {
    let sep = k.iter().position(|b| *b == 0)?;
    let archive = Name::new(String::from_utf8_lossy(&k[..sep]).into_owned()).ok()?;
    let id = <[u8; 32]>::try_from(k.get(sep + 1..)?).ok()?;
    Some((archive, BlockId::from_bytes(id)))
}

/// The key of block `id`'s pin to session `s` of `archive`.
fn pin_key(archive: &Name, s: &Name, id: &BlockId) -> Vec<u8> {
    key(&[
        archive.as_str().as_bytes(),
        s.as_str().as_bytes(),
        id.as_bytes(),
    ])
}

impl MetaStore {
    pub fn block(&self, archive: &Name, id: &BlockId) -> Result<Option<BlockRecord>> {
        let k = block_key(archive, id);
        Ok(self
            .t
            .blocks
            .get(k)
            .map_err(engine("read block record"))?
            .and_then(|v| BlockRecord::decode(&v)))
    }

    /// Record that `archive` holds block `id` (already written to storage),
    /// update the archive's counters and activity, and pin the block to an
    /// open session. Returns true if the block was new to the archive.
    pub fn insert_block(
        &self,
        archive: &Name,
        id: &BlockId,
        rec: &BlockRecord,
        pin: Option<&Name>,
    ) -> Result<bool> {
        let bk = block_key(archive, id);
        let encoded = rec.encode();
        let pin_key = pin.map(|s| pin_key(archive, s, id));
        let t = &self.t;
        (&t.blocks, &t.archives, &t.pins, &t.condemned, &t.gc_journal)
            .transaction(|(blocks, archives, pins, condemned, journal)| {
                if journal.get(&bk)?.is_some() {
                    return abort(MetaError::BeingDestroyed(*id));
                }
                // Stored (again) by an upload: whatever a sweep condemned,
                // this block is wanted.
                if condemned.get(&bk)?.is_some() {
                    condemned.remove(bk.as_slice())?;
                }
                let created = blocks.get(&bk)?.is_none();
                if created {
                    blocks.insert(bk.as_slice(), encoded.as_slice())?;
                }
                let Some(raw) = archives.get(archive.as_str().as_bytes())? else {
                    return abort(MetaError::Engine {
                        context: "insert block",
                        source: format!("archive {archive} has no record").into(),
                    });
                };
                let mut a: ArchiveRecord = tx_dec("archive", &raw)?;
                if created {
                    a.bytes_stored += rec.size;
                    a.block_count += 1;
                }
                a.last_activity = Some(
                    a.last_activity
                        .map_or(rec.stored_at, |t| t.max(rec.stored_at)),
                );
                archives.insert(archive.as_str().as_bytes(), enc(&a))?;
                if let Some(pk) = &pin_key {
                    pins.insert(pk.as_slice(), &[][..])?;
                }
                Ok(created)
            })
            .map_err(tx_err("insert block record"))
    }

    /// A block the archive holds was sent again: lift a sweep's condemned
    /// mark, pin it to `pin` and note the activity, only if its record still
    /// exists (false: a sweep removed it; the bytes must be sent again).
    pub fn touch_block(
        &self,
        archive: &Name,
        id: &BlockId,
        pin: Option<&Name>,
        at: UnixMillis,
    ) -> Result<bool> {
        let bk = block_key(archive, id);
        let pin_key = pin.map(|s| pin_key(archive, s, id));
        let t = &self.t;
        (&t.blocks, &t.archives, &t.pins, &t.condemned, &t.gc_journal)
            .transaction(|(blocks, archives, pins, condemned, journal)| {
                if journal.get(&bk)?.is_some() || blocks.get(&bk)?.is_none() {
                    return Ok(false);
                }
                if condemned.get(&bk)?.is_some() {
                    condemned.remove(bk.as_slice())?;
                }
                if let Some(raw) = archives.get(archive.as_str().as_bytes())? {
                    let mut a: ArchiveRecord = tx_dec("archive", &raw)?;
                    a.last_activity = Some(a.last_activity.map_or(at, |t| t.max(at)));
                    archives.insert(archive.as_str().as_bytes(), enc(&a))?;
                }
                if let Some(pk) = &pin_key {
                    pins.insert(pk.as_slice(), &[][..])?;
                }
                Ok(true)
            })
            .map_err(tx_err("touch a block"))
    }

    /// The ids among `ids` the archive does not hold (or holds only as a
    /// copy found corrupt: the device uploads it again), in the order given.
    /// With `pin`, the ids it does hold are pinned to that session. Plain
    /// reads and writes, one key at a time: a batch or a transaction would
    /// hold the lock every other metadata operation waits for. Blocking:
    /// call it from the blocking pool.
    pub fn missing(
        &self,
        archive: &Name,
        ids: &[BlockId],
        pin: Option<&Name>,
    ) -> Result<Vec<BlockId>> {
        let a = archive.as_str().as_bytes();
        let mut missing = Vec::new();
        for id in ids {
            if !self.holds_good(a, id)? {
                missing.push(*id);
            } else if let Some(s) = pin {
                self.t
                    .pins
                    .insert(pin_key(archive, s, id), &[][..])
                    .map_err(engine("pin blocks"))?;
                // A sweep that condemned or destroyed it before the pin
                // landed: asked for again (a sweep checks pins after
                // condemning, so one of the two sees the other).
                if !self.holds_good(a, id)? {
                    missing.push(*id);
                }
            }
        }
        Ok(missing)
    }

    /// Whether the archive holds `id` with bytes not known to be corrupt,
    /// and not condemned by a sweep (which reads as absent: the device sends
    /// it again, and the upload lifts the mark).
    pub(crate) fn holds_good(&self, archive: &[u8], id: &BlockId) -> Result<bool> {
        let k = key(&[archive, id.as_bytes()]);
        let present = self
            .t
            .blocks
            .contains_key(&k)
            .map_err(engine("read block record"))?;
        Ok(present
            && !self
                .t
                .corrupt
                .contains_key(&k)
                .map_err(engine("read corrupt blocks"))?
            && !self
                .t
                .condemned
                .contains_key(&k)
                .map_err(engine("read condemned blocks"))?)
    }

    /// Record that the stored bytes of `id` do not match it, or are gone
    /// (`kind`), found `at`. Returns false when it was recorded before.
    pub fn mark_damaged(
        &self,
        archive: &Name,
        id: &BlockId,
        kind: Damage,
        at: UnixMillis,
    ) -> Result<bool> {
        let k = block_key(archive, id);
        let mut v = at.to_be_bytes().to_vec();
        v.push(kind as u8);
        let old = self
            .t
            .corrupt
            .compare_and_swap(&k, None as Option<&[u8]>, Some(v))
            .map_err(engine("record a damaged block"))?;
        Ok(old.is_ok())
    }

    /// When `id`'s stored copy was found damaged, if it was and is not
    /// healed.
    pub fn corrupt_since(&self, archive: &Name, id: &BlockId) -> Result<Option<UnixMillis>> {
        let k = block_key(archive, id);
        Ok(self
            .t
            .corrupt
            .get(k)
            .map_err(engine("read corrupt blocks"))?
            .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))))
    }

    /// The blocks of `archive` found damaged and not healed (usually none:
    /// one prefix scan of a small tree).
    pub fn damaged_in(&self, archive: &Name) -> Result<std::collections::HashSet<BlockId>> {
        let mut out = std::collections::HashSet::new();
        for kv in self
            .t
            .corrupt
            .scan_prefix(prefix(&[archive.as_str().as_bytes()]))
        {
            let (k, _) = kv.map_err(engine("scan damaged blocks"))?;
            if let Some((_, id)) = split_block_key(&k) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Every block found damaged and not healed, by archive.
    pub fn damaged_blocks(&self) -> Result<Vec<DamagedBlock>> {
        let mut out = Vec::new();
        for kv in self.t.corrupt.iter() {
            let (k, v) = kv.map_err(engine("scan damaged blocks"))?;
            let (Some((archive, id)), Some(at)) = (
                split_block_key(&k),
                v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()),
            ) else {
                continue;
            };
            out.push(DamagedBlock {
                archive,
                id,
                kind: if v.get(8) == Some(&(Damage::Missing as u8)) {
                    Damage::Missing
                } else {
                    Damage::Corrupt
                },
                found_at: u64::from_be_bytes(at),
            });
        }
        Ok(out)
    }

    /// Up to `n` block records after the key `after` (from the first when
    /// `None`), for walking every stored block without holding an iterator.
    pub fn blocks_page(&self, after: Option<&[u8]>, n: usize) -> Result<Vec<StoredBlock>> {
        let iter = match after {
            Some(a) => self
                .t
                .blocks
                .range::<&[u8], _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => self.t.blocks.iter(),
        };
        let mut out = Vec::with_capacity(n);
        for kv in iter.take(n) {
            let (k, v) = kv.map_err(engine("scan block records"))?;
            let (Some((archive, id)), Some(rec)) = (split_block_key(&k), BlockRecord::decode(&v))
            else {
                continue;
            };
            out.push(StoredBlock {
                key: k.to_vec(),
                archive,
                id,
                record: rec,
            });
        }
        Ok(out)
    }

    /// A good copy of a block found corrupt was stored at `rec`: point the
    /// record at it and clear the mark (counters are unchanged: the block
    /// was counted when first stored), and pin it to `pin`.
    pub fn heal_block(
        &self,
        archive: &Name,
        id: &BlockId,
        rec: &BlockRecord,
        pin: Option<&Name>,
    ) -> Result<()> {
        let k = block_key(archive, id);
        let encoded = rec.encode();
        let pin_key = pin.map(|s| pin_key(archive, s, id));
        let t = &self.t;
        (&t.blocks, &t.corrupt, &t.pins, &t.condemned, &t.gc_journal)
            .transaction(|(blocks, corrupt, pins, condemned, journal)| {
                if journal.get(&k)?.is_some() {
                    return abort(MetaError::BeingDestroyed(*id));
                }
                if condemned.get(&k)?.is_some() {
                    condemned.remove(k.as_slice())?;
                }
                blocks.insert(k.as_slice(), encoded.as_slice())?;
                corrupt.remove(k.as_slice())?;
                if let Some(pk) = &pin_key {
                    pins.insert(pk.as_slice(), &[][..])?;
                }
                Ok(())
            })
            .map_err(tx_err("heal block"))
    }

    /// Blocks pinned to a session.
    pub fn pinned_count(&self, archive: &Name, session: &Name) -> Result<u64> {
        let p = prefix(&[archive.as_str().as_bytes(), session.as_str().as_bytes()]);
        Ok(self.t.pins.scan_prefix(p).count() as u64)
    }

    /// Drop a closed session's pins: its blocks are now protected by the
    /// backup that references them, or free to collect. One key at a time
    /// (see [`MetaStore::missing`]).
    pub fn release_pins(&self, archive: &Name, session: &Name) -> Result<u64> {
        let p = prefix(&[archive.as_str().as_bytes(), session.as_str().as_bytes()]);
        let mut n = 0;
        for kv in self.t.pins.scan_prefix(p) {
            let (k, _) = kv.map_err(engine("scan pins"))?;
            self.t.pins.remove(k).map_err(engine("release pins"))?;
            n += 1;
        }
        Ok(n)
    }
}

impl MetaStore {
    /// When the last full scrub finished.
    pub fn scrub_finished(&self) -> Result<Option<UnixMillis>> {
        Ok(self
            .t
            .meta
            .get(SCRUB_FINISHED)
            .map_err(engine("read scrub state"))?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?))))
    }

    pub fn set_scrub_finished(&self, at: UnixMillis) -> Result<()> {
        self.t
            .meta
            .insert(SCRUB_FINISHED, &at.to_be_bytes())
            .map_err(engine("write scrub state"))?;
        Ok(())
    }
}

const SCRUB_FINISHED: &[u8] = b"scrub.last_finished";
